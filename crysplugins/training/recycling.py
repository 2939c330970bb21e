"""Recycling runs (RecCrysFormer paper 000, section 4 and section 5 "Recycling (modified)").

A recycling run is a complete training run of the same architecture whose first convolution takes a
second input channel: a *template* density.  This module holds everything recycling adds to a plain
RecCrysFormer run; the task, Trainer and CLI call it.

Input channels (fixed convention, also used by the exported ONNX model and the inference plugin):
channel 0 = normalised Patterson map, channel :data:`TEMPLATE_CHANNEL` (1) = template density in [-1, 1].

**Weight transfer** (:func:`transfer_weights`, section 4 item iii): every parameter of the new model is
initialised from the previous run's final weights plus slight Gaussian noise.  The noise of a tensor W is
N(0, (noise_std * rms(W_prev))^2) per element (relative, so that layer norms near 1 and linear weights
near 0.02 get proportionate noise; a tensor that is exactly zero gets none).  Buffers (the standard
residue boxes) are copied without noise.

What "only half of the weights in the first convolutional layer" means here (``first_conv="patterson"``,
the default): in the *first* recycling run the previous model's first conv has weights of shape
(c, 1, k, k, k) and the new one (c, 2, k, k, k).  The Patterson-channel half ``W[:, 0]`` (and the bias) is
transferred (+ noise); the template-channel half ``W[:, 1]`` keeps the new model's fresh (Kaiming)
initialisation.  That is exactly half of the layer's weights, and it is the reading that matches the
paper's reason: "to balance between learned weights on the Patterson map inputs and necessary
randomization for weights acting on the previously unseen template map inputs".  In later recycling runs
the previous model already has two channels and every weight is transferred.  The alternative reading
(``first_conv="half-filters"``) transfers the Patterson-channel weights and biases of the first
ceil(c/2) output filters only; everything else in the layer stays freshly initialised.

**Template channel** (section 4 items i-ii, section 5): per example the template is the previous run's
prediction, replaced by the refined map post-processed as in appendix E
(:func:`crysplugins.crystal.templates.postprocess_template`) with probability ``refined_prob`` when the
example was refined (0.7 in the paper's first "Recycling" run, 1/6 in "Recycling (modified)").  At
evaluation every refined example uses its refined template (section 5: "we replace all templates for
examples successfully refined after the initial training run").  Gaussian noise (std ``template_noise``,
in normalised density units) is added to the template channel only, never to the Patterson channel, and
only in training; values are not clipped.

Templates come from ``crysplugins dataset templates`` (:mod:`crysplugins.datasets.templates`), which
stores them per dataset shard in ``<dataset>/templates/<name>/<shard>.npz``
(:class:`crysplugins.datasets.template_store.TemplateStore`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from crysplugins.crystal.maps import invert_grid
from crysplugins.errors import CrysError
from crysplugins.datasets.template_store import TEMPLATE_CHANNEL, choose_templates, with_template
from crysplugins.training.config import refuse_unknown

#: state-dict prefix of RecCrysFormer's first convolution (Patterson path, section 5: kernel 7)
FIRST_CONV = "embed.conv"

@dataclass
class RecyclingSettings:
    """The "recycling" section of a reccrysformer config (section 4; the CLI sets it)."""

    recycle_from: str | None = None   # previous run folder (checkpoint + config)
    templates: str | None = None      # template set under <dataset>/templates/ (default: previous run's name)
    refined_prob: float = 1.0 / 6.0   # P(refined template | example refined); 0.7 = the paper's first formulation
    template_noise: float = 0.05      # std of Gaussian noise on the template channel (training only)
    transfer: bool = True             # initialise from the previous run (False: the paper's plain "Recycling")
    transfer_noise: float = 0.01      # relative std of the noise added to transferred weights
    first_conv: str = "patterson"     # "patterson" | "half-filters" (see the module docstring)
    template_hand_flip: float = 0.0   # P(template inverted through the cell centre) in training

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "RecyclingSettings":
        """Settings from a config section; unknown keys and impossible values are one sentence each."""
        refuse_unknown(cls, values, "recycling")
        s = cls(**{k: v for k, v in values.items() if v is not None or k in ("recycle_from", "templates")})
        try:
            for name in ("refined_prob", "template_noise", "transfer_noise", "template_hand_flip"):
                setattr(s, name, float(getattr(s, name)))
        except (TypeError, ValueError):
            raise CrysError(f"The recycling setting {name} must be a number, not {getattr(s, name)!r}.") from None
        if not s.recycle_from:
            raise CrysError("A recycling run needs --recycle-from RUN_DIR.")
        for name in ("refined_prob", "template_hand_flip"):
            if not 0.0 <= getattr(s, name) <= 1.0:
                raise CrysError(f"--{name.replace('_', '-')} must be a probability between 0 and 1.")
        if not (s.template_noise >= 0 and s.transfer_noise >= 0):
            raise CrysError("Noise levels must be 0 or more.")
        if s.first_conv not in ("patterson", "half-filters"):
            raise CrysError("--first-conv must be 'patterson' or 'half-filters'.")
        return s


# ------------------------------------------------------------------------------------ weight transfer

@dataclass
class TransferReport:
    """What :func:`transfer_weights` did: parameter names by treatment and the first-conv details."""

    transferred: list[str] = field(default_factory=list)
    copied_buffers: list[str] = field(default_factory=list)
    fresh: list[str] = field(default_factory=list)
    first_conv: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"transferred": len(self.transferred), "copied_buffers": len(self.copied_buffers),
                "fresh": self.fresh, "first_conv": self.first_conv}


def transfer_weights(model: Any, previous: Mapping[str, Any], noise_std: float = 0.01,
                     first_conv: str = "patterson", conv_prefix: str = FIRST_CONV,
                     seed: int | None = 0) -> TransferReport:
    """Initialise ``model`` (a freshly built torch module) in place from a previous run's ``state_dict``.

    Every tensor of the same name and shape is set to previous + N(0, (noise_std·rms(previous))²).
    The first conv ``conv_prefix`` may grow from 1 to 2 input channels: see the module docstring for which
    half is transferred (``first_conv`` = "patterson" or "half-filters").  Any other mismatch (a missing
    or extra parameter, another shape) raises ValueError: the architectures must agree.
    """
    if first_conv not in ("patterson", "half-filters"):
        raise ValueError(f"first_conv must be 'patterson' or 'half-filters', not {first_conv!r}")
    if noise_std < 0:
        raise ValueError("noise_std must be >= 0")
    gen = torch.Generator().manual_seed(int(seed)) if seed is not None else None
    report = TransferReport()
    params = dict(model.named_parameters())
    buffers = dict(model.named_buffers())
    missing = [k for k in list(params) + list(buffers) if k not in previous]
    extra = [k for k in previous if k not in params and k not in buffers]
    if missing or extra:
        raise ValueError(f"the previous run's model does not match: missing {missing[:5]}, unexpected {extra[:5]}")
    w_name, b_name = f"{conv_prefix}.weight", f"{conv_prefix}.bias"
    if w_name not in params:
        raise ValueError(f"the model has no first convolution '{conv_prefix}'")
    grow_first_conv = tuple(previous[w_name].shape) != tuple(params[w_name].shape)

    def noisy(prev: "torch.Tensor") -> "torch.Tensor":
        prev = prev.detach().to(torch.float32)
        if noise_std == 0 or prev.numel() == 0:
            return prev.clone()
        rms = float(prev.pow(2).mean().sqrt())
        if rms == 0:
            return prev.clone()
        noise = torch.randn(prev.shape, generator=gen, dtype=torch.float32) * (noise_std * rms)
        return prev + noise

    with torch.no_grad():
        for name, p in params.items():
            prev = previous[name]
            if name in (w_name, b_name) and grow_first_conv:
                continue  # handled below
            if tuple(prev.shape) != tuple(p.shape):
                raise ValueError(f"parameter {name} has shape {tuple(p.shape)}, the previous run {tuple(prev.shape)}")
            p.copy_(noisy(prev).to(p.dtype))
            report.transferred.append(name)
        for name, b in buffers.items():
            prev = previous[name]
            if tuple(prev.shape) != tuple(b.shape):
                raise ValueError(f"buffer {name} has shape {tuple(b.shape)}, the previous run {tuple(prev.shape)}")
            b.copy_(prev.to(b.dtype))
            report.copied_buffers.append(name)

        w = params[w_name]
        prev_w = previous[w_name]
        if grow_first_conv:
            # first recycling run: (c, 1, k, k, k) -> (c, 2, k, k, k)
            c_out, c_in_new = w.shape[0], w.shape[1]
            c_in_old = prev_w.shape[1]
            if prev_w.shape[0] != c_out or prev_w.shape[2:] != w.shape[2:] or c_in_old >= c_in_new:
                raise ValueError(f"cannot grow the first convolution from {tuple(prev_w.shape)} to {tuple(w.shape)}")
            n_filters = c_out if first_conv == "patterson" else math.ceil(c_out / 2)
            new_w = noisy(prev_w)
            w[:n_filters, :c_in_old].copy_(new_w[:n_filters].to(w.dtype))
            report.first_conv = {"mode": first_conv, "filters_transferred": int(n_filters),
                                 "input_channels_transferred": int(c_in_old), "input_channels": int(c_in_new),
                                 "fraction_transferred": n_filters * c_in_old / (c_out * c_in_new)}
            b = params.get(b_name)
            if b is not None and b_name in previous:
                b[:n_filters].copy_(noisy(previous[b_name])[:n_filters].to(b.dtype))
            report.fresh.append(f"{w_name}[:, {c_in_old}:]" if n_filters == c_out
                                else f"{w_name}[{n_filters}:] and [:, {c_in_old}:]")
        else:
            report.first_conv = {"mode": "all", "fraction_transferred": 1.0}
    return report


def recycled_model_config(previous_config: Mapping[str, Any]) -> dict[str, Any]:
    """The architecture config of a recycling run: the previous one with ``in_channels`` = 2."""
    cfg = dict(previous_config)
    cfg["in_channels"] = TEMPLATE_CHANNEL + 1
    return cfg


# ------------------------------------------------------------------------------------ template channel

def add_template_noise(x: Any, std: float, rng: np.random.Generator | None = None,
                       generator: Any = None) -> Any:
    """Add N(0, std²) to the template channel of a model input (B, 2, N1, N2, N3); channel 0 untouched.

    Works on numpy arrays (``rng``) and torch tensors (``generator``); returns a new array/tensor.
    """
    if x.shape[1] <= TEMPLATE_CHANNEL:
        raise ValueError(f"input has {x.shape[1]} channel(s); the template is channel {TEMPLATE_CHANNEL}")
    if isinstance(x, np.ndarray):
        out = np.array(x, dtype=np.float32, copy=True)
        if std > 0:
            rng = rng if rng is not None else np.random.default_rng()
            out[:, TEMPLATE_CHANNEL] += rng.normal(0.0, std, out[:, TEMPLATE_CHANNEL].shape).astype(np.float32)
        return out
    out = x.clone()
    if std > 0:
        t = out[:, TEMPLATE_CHANNEL]
        t += torch.randn(t.shape, generator=generator, dtype=t.dtype, device=t.device) * std
    return out


def template_inputs(patterson: np.ndarray, templates: Mapping[str, np.ndarray], refined_prob: float,
                    noise_std: float, rng: np.random.Generator | None,
                    hand_flip: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """The two-channel model input of a batch: Patterson + chosen template (+ noise on the template in
    training).  ``rng=None`` = evaluation (refined template wherever refined, no noise).

    ``hand_flip`` (training only): each template is inverted through the cell centre with this probability.
    A Patterson map cannot fix the hand, and density modification keeps whichever hand its input had, so a
    refined template is of either hand; on the training split it is more often the true one (the previous
    model fits its training examples), on new data it is not.  Flipping at random teaches the recycled
    model that the template's hand carries no information (BENCHMARKS.md, recycling section).

    Returns (x float32 (n, 2, N1, N2, N3), used_refined (n,) bool).
    """
    tpl, used = choose_templates(templates["prediction"], templates["refined"], templates["is_refined"],
                                 refined_prob, rng)
    if rng is not None and hand_flip > 0:
        flip = rng.random(len(tpl)) < hand_flip
        tpl = np.asarray(tpl).copy()
        tpl[flip] = invert_grid(tpl[flip])
    x = with_template(patterson, tpl)
    if rng is not None and noise_std > 0:
        x = add_template_noise(x, noise_std, rng=rng)
    return x, used


def card_recycling_entry(task_recycling: Mapping[str, Any]) -> dict[str, Any]:
    """The ``recycling`` entry of a recycled model's card (from the checkpoint's task state).

    ``base_model`` is the previous run's folder name (the default export name of that run); the inference
    plugin pairs the two models through it, or through ``recycled_model`` in the first model's card.
    """
    src = str(task_recycling.get("recycle_from") or "")
    return {"template_channel": TEMPLATE_CHANNEL, "base_model": Path(src).name if src else None,
            "templates": task_recycling.get("templates"),
            "refined_prob": task_recycling.get("refined_prob"),
            "template_noise": task_recycling.get("template_noise"),
            "transfer": task_recycling.get("transfer"), "transfer_noise": task_recycling.get("transfer_noise"),
            "first_conv": task_recycling.get("first_conv"),
            "template_hand_flip": task_recycling.get("template_hand_flip", 0.0),
            "template_rule": "refined map post-processed as in appendix E when refined, else the previous prediction",
            "template_info": task_recycling.get("template_info")}
