"""Training task 'solvent-unet': the section 2.2 U-net on simulated phasing-map windows.

The task follows the generic Trainer contract (docs/CONTRACTS.md, ``crysplugins/training/loop.py``):
``build_model(config)``, ``batches(split, epoch, rank, world_size)``, ``loss(model, batch)``,
``evaluate(model)``, ``export_example()``.  ``benchmarks/train_solvent_unet.py`` drives the same methods
with a small loop of its own when the shared Trainer is not used.

Config keys (defaults in :data:`DEFAULT_CONFIG`): ``sources`` (train .npz from
:func:`crysplugins.datasets.solvent_windows.save_sources`), ``val_sources``, ``base`` (filters, 24 paper /
8 slim), ``window`` (voxels), ``batch_size``, ``steps_per_epoch``, ``phase_error_range`` (degrees),
``lr`` (Adam, 1e-4 in the paper), ``seed``, ``val_windows``.
Loss: cross-entropy over protein/solvent (the paper's sparse categorical cross-entropy).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from crysplugins.datasets.solvent_windows import WindowSampler, load_sources
from crysplugins.training.nets.unet3d import UNet3D

DEFAULT_CONFIG: dict[str, Any] = {
    "sources": "data_build/solvent/train_sources.npz",
    "val_sources": "data_build/solvent/val_sources.npz",
    "base": 8,
    "window": 48,
    "batch_size": 4,
    "steps_per_epoch": 200,
    "phase_error_range": [35.0, 80.0],
    "val_phase_error": 65.0,
    "val_windows": 48,
    "lr": 1e-4,
    "optimizer": "adam",
    "seed": 0,
}


#: How the plugin must prepare the network input (stored in the model card).
INPUT_CARD: dict[str, Any] = {
    "name": "x", "window": 48, "channels": 1, "normalisation": "zscore-cell", "sampling_rate": 2.0,
    "description": "FOM-weighted phasing map on the Shannon grid (spacing d_min/2), zero mean and unit "
                   "standard deviation over the unit cell",
}


class SolventUNetTask:
    """Protein/solvent segmentation of phasing-map windows (Skubák 2024)."""

    name = "solvent-unet"

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        self.config = {**DEFAULT_CONFIG, **(config or {})}
        data = self.config.get("data")
        if data and not (config or {}).get("sources"):  # `crysplugins train solvent-unet --data FOLDER`
            self.config["sources"] = str(Path(data) / "train_sources.npz")
            self.config["val_sources"] = str(Path(data) / "val_sources.npz")
        train = self.config.get("train") or {}
        if train.get("batch_size"):  # the Trainer's batch size wins
            self.config["batch_size"] = int(train["batch_size"])
        self._train: WindowSampler | None = None
        self._val: tuple[np.ndarray, np.ndarray] | None = None

    # ---------------------------------------------------------------------------------- model
    def build_model(self, config: dict[str, Any] | None = None) -> UNet3D:
        cfg = {**self.config, **{k: v for k, v in (config or {}).items() if k in DEFAULT_CONFIG}}
        torch.manual_seed(int(cfg["seed"]))
        return UNet3D(base=int(cfg["base"]))

    # ----------------------------------------------------------------------------------- data
    def _sampler(self) -> WindowSampler:
        if self._train is None:
            sources = load_sources(Path(self.config["sources"]))
            rng = np.random.default_rng(int(self.config["seed"]))
            self._train = WindowSampler(sources, rng, window=int(self.config["window"]),
                                        phase_error_range=tuple(self.config["phase_error_range"]))
        return self._train

    def set_window(self, window: int) -> None:
        """Change the training window size (voxels, multiple of 8) between epochs."""
        self.config["window"] = int(window)
        if self._train is not None:
            self._train.window = int(window)

    def batches(self, split: str = "train", epoch: int = 0, rank: int = 0,
                world_size: int = 1) -> Iterator[dict[str, torch.Tensor]]:
        """Freshly generated windows each epoch (``steps_per_epoch`` batches)."""
        if split != "train":
            x, y = self.validation_windows()
            bs = int(self.config["batch_size"])
            for i in range(0, len(x), bs):
                yield {"x": torch.from_numpy(x[i:i + bs]), "y": torch.from_numpy(y[i:i + bs])}
            return
        sampler = self._sampler()
        for _ in range(int(self.config["steps_per_epoch"])):
            x, y = sampler.sample(int(self.config["batch_size"]))
            yield {"x": torch.from_numpy(x), "y": torch.from_numpy(y)}

    def validation_windows(self) -> tuple[np.ndarray, np.ndarray]:
        """A fixed set of validation windows (48³, fixed seed, phase error ``val_phase_error``)."""
        if self._val is None:
            sources = load_sources(Path(self.config["val_sources"]))
            rng = np.random.default_rng(12345)
            pe = float(self.config["val_phase_error"])
            sampler = WindowSampler(sources, rng, window=48, phase_error_range=(pe, pe), refresh=10 ** 9)
            self._val = sampler.sample(int(self.config["val_windows"]))
        return self._val

    # ----------------------------------------------------------------------------------- loss
    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        logits = model(batch["x"])
        loss = F.cross_entropy(logits, batch["y"])
        with torch.no_grad():
            acc = (logits.argmax(1) == batch["y"]).float().mean().item()
        return loss, {"loss": float(loss.item()), "accuracy": acc}

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module) -> dict[str, float]:
        """Voxel accuracy and solvent precision/recall on the validation windows (argmax decision)."""
        was_training = model.training
        model.eval()
        tp = tn = fp = fn = 0.0
        losses = []
        for batch in self.batches("val"):
            logits = model(batch["x"])
            losses.append(float(F.cross_entropy(logits, batch["y"]).item()))
            p = logits.argmax(1).bool()
            t = batch["y"].bool()
            tp += float((p & t).sum()); tn += float((~p & ~t).sum())
            fp += float((p & ~t).sum()); fn += float((~p & t).sum())
        model.train(was_training)
        n = tp + tn + fp + fn
        return {"val_loss": float(np.mean(losses)), "val_accuracy": (tp + tn) / n,
                "val_precision": tp / max(tp + fp, 1.0), "val_recall": tp / max(tp + fn, 1.0)}

    def export_example(self) -> dict[str, torch.Tensor]:
        """ONNX export input (name "x"): batch 2 (dynamic batch needs >= 2, CALIBRATION.md), 48³ window."""
        return {"x": torch.zeros(2, 1, 48, 48, 48)}

    def card(self) -> dict[str, Any]:
        """Model-card entries the solvent-mask plugin reads (added by ``crysplugins export``).

        P_U (section 2.3) needs the trained model run over training crystals: benchmarks/export_solvent_unet.py
        adds it; without it the plugin still predicts masks but cannot combine with Matthews (eq. 2).
        """
        return {"input": INPUT_CARD, "output": {"name": "logits", "classes": ["protein", "solvent"]},
                "tiling": {"overlap": 16, "batch": 2},
                "combination": {"high_threshold": 0.25, "low_threshold": 0.005}}


def make_task(config: dict[str, Any] | None = None) -> SolventUNetTask:
    return SolventUNetTask(config)


# ------------------------------------------------------------------------------------ export + card

def load_checkpoint(path: str | Path) -> tuple[UNet3D, dict[str, Any]]:
    """The U-net and its config from a checkpoint written by the training loop."""
    saved = torch.load(Path(path), map_location="cpu", weights_only=False)
    config = {**DEFAULT_CONFIG, **saved.get("config", {})}
    model = UNet3D(base=int(config["base"]))
    model.load_state_dict(saved["model"])
    model.eval()
    return model, {"config": config, "state": saved.get("state", {})}


def export_onnx(model: UNet3D, path: str | Path, window: int = 48) -> None:
    """ONNX export (dynamo exporter, dynamic batch, fixed window³), checked against torch."""
    import onnxruntime as ort

    model.eval()
    x = torch.randn(2, 1, window, window, window)
    batch = torch.export.Dim("batch", min=1, max=256)
    path = Path(path)
    tmp = path.with_suffix(".tmp.onnx")
    torch.onnx.export(model, (x,), str(tmp), input_names=["x"], output_names=["logits"],
                      dynamic_shapes={"x": {0: batch}}, dynamo=True, external_data=False)
    sess = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
    for b in (1, 3):
        xb = torch.randn(b, 1, window, window, window)
        with torch.no_grad():
            ref = model(xb).numpy()
        out = sess.run(None, {"x": xb.numpy()})[0]
        if not np.allclose(out, ref, atol=1e-3):
            raise RuntimeError(f"ONNX export differs from torch by {np.abs(out - ref).max():.2e} at batch {b}")
    tmp.replace(path)


def calibrate_pu(session: Any, card: dict, sources: list, phase_errors: tuple[float, ...] = (50.0, 65.0, 80.0),
                 seed: int = 3, edges: tuple[float, ...] | None = None) -> tuple[dict, list[float]]:
    """P_U of section 2.3: histogram of per-crystal logit cut-offs that reproduce the true solvent content.

    Each source is given one simulated phasing map per phase error (degrees, cycled over the sources).
    """
    from crysplugins.crystal.solvent_content_combination import LogitCutoffDistribution, logit_cutoff
    from crysplugins.datasets.phasing import phasing_map, simulate_phasing
    from crysplugins.plugins.solvent_mask import solvent_probability, symmetry_averaged

    rng = np.random.default_rng(seed)
    cutoffs = []
    for i, src in enumerate(sources):
        pe = phase_errors[i % len(phase_errors)]
        cmap = phasing_map(src, simulate_phasing(src, pe, rng))
        prob = symmetry_averaged(cmap, solvent_probability(cmap, session, card))
        cutoffs.append(logit_cutoff(prob, src.solvent_fraction))
    if edges is None:
        lo, hi = np.floor(min(cutoffs)) - 0.5, np.ceil(max(cutoffs)) + 0.5
        edges = tuple(np.arange(lo, hi + 1e-9, 0.5))
    dist = LogitCutoffDistribution.from_cutoffs(cutoffs, edges)
    return dist.to_card(), cutoffs


def sha256(path: str | Path) -> str:
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
