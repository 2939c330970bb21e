"""Training task 'hand-classifier': which hand of a predicted fragment density holds L-amino acids.

Companion of a hand-invariant RecCrysFormer (see :mod:`crysplugins.training.nets.hand_classifier` for
why).  Data: the ``crysplugins-patterson-v1`` dataset the RecCrysFormer was trained on (its family-held-out
train/test splits).  Each training map is

* the true density (normalised [-1, 1]) or, when ``predictions`` names an ``.npz`` written by
  ``benchmarks/bench_hand_invariant.py --save-predictions`` (arrays ``ids``, ``shapes``, ``pred_flat``,
  ``inverted``), the model's
  prediction brought to the true hand (so that the label stays right), with probability ``p_prediction``;
* degraded at random like a prediction: a Gaussian blur of ``blur_sigma`` voxels (0.5 Å each at 1.5 Å),
  a fraction ``mix`` of its own inverse added (a partly hand-averaged map), and Gaussian noise;
* inverted through the cell centre with probability 1/2 (label 1 = inverted, D-amino acids);
* normalised to zero mean and unit standard deviation.

Loss: binary cross-entropy on the logit.  Evaluation: accuracy on the test split's true maps (as stored and
inverted) and on the same maps degraded at the middle of the ranges.

Config (JSON)::

    {"task": "hand-classifier", "data": "data_build/dipeptide", "model": {...HandClassifier keys...},
     "augment": {"blur_sigma": [0, 1.5], "mix": [0, 0.35], "noise": [0, 0.3]},
     "predictions": null, "p_prediction": 0.5, "eval_examples": 1024,
     "train": {...Trainer keys...}}
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from crysplugins.crystal.maps import invert_grid
from crysplugins.errors import CrysError
from crysplugins.training.batching import BatchList
from crysplugins.training.checkpoint import Checkpoint
from crysplugins.training.losses import invert_through_centre
from crysplugins.training.nets.hand_classifier import HandClassifier
from crysplugins.training.onnx_export import ExportOptions, ExportSpec, task_export_spec
from crysplugins.training.tasks.reccrysformer import RecCrysFormerTask, short_path

TASK_DEFAULTS: dict[str, Any] = {
    "data": None,
    "model": {},
    "augment": {"blur_sigma": [0.0, 1.5], "mix": [0.0, 0.35], "noise": [0.0, 0.3]},
    "predictions": None,
    "p_prediction": 0.5,
    "eval_examples": 1024,
    "train": {},
}

#: How the plugin must prepare the classifier's input (stored in the model card).
INPUT_CARD: dict[str, Any] = {
    "name": "density", "channels": 1, "normalisation": "zscore-map",
    "description": "the RecCrysFormer's predicted density on its own grid, zero mean and unit standard "
                   "deviation over the cell; output: logit > 0 when the map is the inverted (D) hand",
}


def blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Gaussian blur of each map (B, 1, N1, N2, N3) with its own sigma (voxels), in Fourier space."""
    dims = x.shape[-3:]
    k2 = sum(torch.fft.fftfreq(n).reshape([-1 if i == a else 1 for i in range(3)]) ** 2
             for a, n in enumerate(dims))
    factor = torch.exp(-2 * np.pi ** 2 * sigma.reshape(-1, 1, 1, 1, 1) ** 2 * k2)
    return torch.fft.ifftn(torch.fft.fftn(x, dim=(-3, -2, -1)) * factor, dim=(-3, -2, -1)).real


def standardise(x: torch.Tensor) -> torch.Tensor:
    """Zero mean, unit standard deviation per map."""
    flat = x.reshape(x.shape[0], -1)
    mean = flat.mean(dim=1).reshape(-1, 1, 1, 1, 1)
    std = flat.std(dim=1).clamp_min(1e-6).reshape(-1, 1, 1, 1, 1)
    return (x - mean) / std


def degrade(x: torch.Tensor, gen: torch.Generator, ranges: dict[str, list[float]]) -> torch.Tensor:
    """Blur, mix with the own inverse and add noise, each amount drawn uniformly from ``ranges``."""
    n = x.shape[0]

    def draw(key: str) -> torch.Tensor:
        lo, hi = ranges[key]
        return lo + (hi - lo) * torch.rand(n, generator=gen)

    x = blur(x, draw("blur_sigma"))
    mix = draw("mix").reshape(-1, 1, 1, 1, 1)
    x = (1 - mix) * x + mix * invert_through_centre(x)
    x = standardise(x)
    return x + draw("noise").reshape(-1, 1, 1, 1, 1) * torch.randn(x.shape, generator=gen)


class HandTask:
    """The task object the Trainer drives (contract in ``crysplugins/training/loop.py``)."""

    name = "hand-classifier"
    output_name = "logit"

    def __init__(self, config: dict[str, Any]) -> None:
        cfg = {**TASK_DEFAULTS, **config}
        cfg["augment"] = {**TASK_DEFAULTS["augment"], **(config.get("augment") or {})}
        self.config = cfg
        if not cfg.get("data"):
            raise CrysError("The hand-classifier task needs a dataset folder (--data DIR).")
        # the RecCrysFormer task reads the same dataset format; reuse its same-shape bins
        self.maps = RecCrysFormerTask({"data": cfg["data"], "train": cfg.get("train") or {}})
        self.batch_size = self.maps.batch_size
        self.seed = self.maps.seed
        self.predictions = self._load_predictions(cfg.get("predictions"))

    def _load_predictions(self, path: str | None) -> dict[str, np.ndarray]:
        if not path:
            return {}
        try:
            with np.load(path) as z:
                ids, shapes, inverted, flat = z["ids"], z["shapes"], z["inverted"], z["pred_flat"]
        except (OSError, ValueError, KeyError) as exc:
            raise CrysError(f"The predictions file {path} cannot be read as a bench_hand_invariant.py "
                            f"--save-predictions file ({exc}).") from None
        if sum(int(np.prod(s)) for s in shapes) != len(flat) or not len(ids) == len(shapes) == len(inverted):
            raise CrysError(f"The predictions file {path} is inconsistent (ids, shapes and pred_flat disagree).")
        out = {}
        offset = 0
        for i, shape, inv in zip(ids, shapes, inverted):
            size = int(np.prod(shape))
            p = flat[offset:offset + size].reshape(tuple(shape)).astype(np.float32)
            offset += size
            out[str(i)] = invert_grid(p) if inv else p
        return out

    # ------------------------------------------------------------------------------------- data
    def batches(self, split: str = "train", epoch: int = 0, rank: int = 0, world_size: int = 1) -> "_HandBatches":
        plain = self.maps.batches(split, epoch, rank, world_size)
        return _HandBatches(self, plain.bins, plain.plan, epoch)

    # ------------------------------------------------------------------------------------ model
    def build_model(self, config: dict[str, Any] | None = None) -> HandClassifier:
        torch.manual_seed(self.seed)
        return HandClassifier(self.config.get("model") or {})

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        logit = model(batch["density"]).float()
        loss = F.binary_cross_entropy_with_logits(logit, batch["label"])
        acc = ((logit > 0).float() == batch["label"]).float().mean()
        return loss, {"loss": float(loss.detach()), "accuracy": float(acc)}

    def evaluate(self, model: torch.nn.Module, limit: int | None = None) -> dict[str, float]:
        """Accuracy on test true maps (each as stored and inverted) and on degraded ones."""
        device = next(model.parameters()).device
        gen = torch.Generator().manual_seed(4321)
        mid = {k: [0.5 * (lo + hi)] * 2 for k, (lo, hi) in self.config["augment"].items()}
        clean, degraded = [], []
        for batch in self.maps.eval_batches(limit or int(self.config["eval_examples"])):
            d = batch["density"]
            for store, x in ((clean, standardise(d)), (degraded, degrade(d, gen, mid))):
                logit = model(x.to(device)).float().cpu()
                store += (logit < 0).tolist()  # stored hand: L
                store += (model(invert_through_centre(x).to(device)).float().cpu() > 0).tolist()
        return {"test_accuracy": float(np.mean(clean)), "test_accuracy_degraded": float(np.mean(degraded)),
                "test_n": len(clean) // 2}

    # ---------------------------------------------------------------------------------- export
    def export_example(self) -> dict[str, torch.Tensor]:
        return {"density": standardise(torch.randn(2, 1, 16, 24, 24))}

    def parity_examples(self) -> list[dict[str, torch.Tensor]]:
        """Other grid shapes for the ONNX parity check of the export."""
        gen = torch.Generator().manual_seed(7)
        return [{"density": standardise(torch.randn((1, 1) + s, generator=gen))}
                for s in ((16, 16, 32), (24, 32, 32), (32, 32, 32))]

    def card(self) -> dict[str, Any]:
        meta = self.maps.meta
        return {"input": INPUT_CARD, "grid": {"d_min": meta.get("d_min"), "sampling_rate": meta.get("sampling_rate")},
                "data": {"dataset": short_path(str(self.config["data"])), "splits": "family-held-out train/test of the dataset",
                         "predictions": self.config.get("predictions")}}

    def state(self) -> dict[str, Any]:
        return {"dataset": str(self.config["data"])}


class _HandBatches(BatchList):
    """Degraded maps of either hand and their labels; the draws depend on (seed, epoch, batch) only."""

    def __init__(self, task: HandTask, bins, plan, epoch: int) -> None:
        super().__init__(bins, plan)
        self.task, self.epoch = task, epoch

    def make(self, b: dict[str, np.ndarray], idx: np.ndarray, i: int) -> dict[str, torch.Tensor]:
        task = self.task
        gen = torch.Generator().manual_seed(hash((task.seed, self.epoch, i)) % (2 ** 62))
        dens = torch.from_numpy(b["density"][idx].astype(np.float32)).unsqueeze(1)
        if task.predictions:
            ids = b["ids"][idx]
            use = torch.rand(len(ids), generator=gen) < float(task.config["p_prediction"])
            for j, ex_id in enumerate(ids):
                p = task.predictions.get(str(ex_id))
                if use[j] and p is not None and p.shape == tuple(dens.shape[2:]):
                    dens[j, 0] = torch.from_numpy(p)
        x = degrade(dens, gen, task.config["augment"])
        label = (torch.rand(len(idx), generator=gen) < 0.5).float()
        flip = label.bool().reshape(-1, 1, 1, 1, 1)
        x = torch.where(flip, invert_through_centre(x), x)
        return {"density": x, "label": label}


def export_spec(checkpoints: list[Checkpoint], options: ExportOptions) -> ExportSpec:
    """The exporter's view of a run of this task (see :func:`crysplugins.training.onnx_export.task_export_spec`)."""
    config = checkpoints[0].config
    return task_export_spec(HandTask(config), checkpoints, config)
