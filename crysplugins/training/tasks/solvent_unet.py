"""Training task 'solvent-unet': the section 2.2 U-net (Skubák 2024) on simulated phasing-map windows.

``crysplugins train solvent-unet --data data_build/solvent --out RUN`` trains it with the shared Trainer;
``crysplugins export RUN/best.pt --name solvent-unet`` writes the ONNX model and its card, P_U included.

Config keys (defaults in :data:`DEFAULT_CONFIG`): ``sources`` (train .npz from
:func:`crysplugins.datasets.solvent_windows.save_sources`; ``--data FOLDER`` means
``FOLDER/train_sources.npz`` and ``FOLDER/val_sources.npz``), ``val_sources``, ``base`` (filters, 24 paper /
8 slim), ``window`` (voxels), ``batch_size``, ``steps_per_epoch``, ``phase_error_range`` (degrees),
``window_schedule`` ([[window, batch, fraction of the run], ...]: small windows first for speed, 48³ at the
end), ``lr`` (Adam), ``seed``, ``val_windows``, ``n_calibration`` (crystals for P_U at export),
``lv_wrong_weight`` (extra loss weight of the voxels the local-rms mask of the same map gets wrong, 0: none;
:class:`~crysplugins.datasets.solvent_windows.WindowSampler`), ``dm_share`` (share of the training maps taken
from density modification at one of ``dm_cycles``, the U-net mode steered by the model card ``dm_model``;
:func:`~crysplugins.datasets.solvent_windows.dm_cycle_map`).
Loss: cross-entropy over protein/solvent (the paper's sparse categorical cross-entropy), voxel-weighted
when ``lv_wrong_weight`` > 0.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from crysplugins.crystal.solvent_content_combination import LogitCutoffDistribution, logit_cutoff
from crysplugins.datasets.phasing import phasing_map, simulate_phasing
from crysplugins.datasets.solvent_windows import TEST_FAMILIES, WindowSampler, load_sources
from crysplugins.runtime.solvent_unet import solvent_probability, symmetry_averaged
from crysplugins.training.checkpoint import Checkpoint, load_weights
from crysplugins.training.nets.unet3d import UNet3D, UNet3DEnsemble, count_parameters
from crysplugins.training.onnx_export import ExportOptions, ExportSpec, task_export_spec

DEFAULT_CONFIG: dict[str, Any] = {
    "sources": "data_build/solvent/train_sources.npz",
    "val_sources": "data_build/solvent/val_sources.npz",
    "base": 8,
    "window": 48,
    "batch_size": 4,
    "steps_per_epoch": 200,
    "phase_error_range": [35.0, 80.0],
    "window_schedule": None,
    "val_phase_error": 65.0,
    "val_windows": 48,
    "lr": 1e-4,
    "optimizer": "adam",
    "seed": 0,
    "n_calibration": 60,
    "lv_wrong_weight": 0.0,
    "dm_share": 0.0,
    "dm_cycles": [5, 10, 15, 20, 25],
    "dm_model": "solvent-unet",
}

#: How the plugin must prepare the network input (stored in the model card).
INPUT_CARD: dict[str, Any] = {
    "name": "x", "window": 48, "channels": 1, "normalisation": "zscore-cell", "sampling_rate": 2.0,
    "description": "FOM-weighted phasing map on the Shannon grid (spacing d_min/2), zero mean and unit "
                   "standard deviation over the unit cell",
}

#: Thresholds of the Matthews/U-net combination (section 2.3) the plugin reads from the card.
COMBINATION = {"high_threshold": 0.25, "low_threshold": 0.005}

#: Phase errors (degrees) of the maps P_U is calibrated on, cycled over the crystals.
CALIBRATION_PHASE_ERRORS = (50.0, 65.0, 80.0)


class SolventUNetTask:
    """Protein/solvent segmentation of phasing-map windows (Skubák 2024)."""

    name = "solvent-unet"
    output_name = "logits"

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        self.config = {**DEFAULT_CONFIG, **(config or {})}
        data = self.config.get("data")
        if data and not (config or {}).get("sources"):
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
            dm_share = float(self.config["dm_share"])
            provider = None
            if dm_share > 0:
                from crysplugins.dm_command import unet_mask_provider  # the ONNX card; only when DM maps are drawn
                provider = unet_mask_provider(str(self.config["dm_model"]))
            self._train = WindowSampler(sources, rng, window=int(self.config["window"]),
                                        phase_error_range=tuple(self.config["phase_error_range"]),
                                        lv_wrong_weight=float(self.config["lv_wrong_weight"]), dm_share=dm_share,
                                        dm_cycles=tuple(int(c) for c in self.config["dm_cycles"]),
                                        dm_provider=provider)
        return self._train

    def set_window(self, window: int) -> None:
        """Change the training window size (voxels, multiple of 8) between batches."""
        self.config["window"] = int(window)
        if self._train is not None:
            self._train.window = int(window)

    def on_progress(self, fraction: float) -> None:
        """Follow ``window_schedule``: the (window, batch size) of the phase that ``fraction`` of the run is in."""
        schedule = self.config.get("window_schedule")
        if not schedule:
            return
        end = 0.0
        for window, batch, share in schedule:
            end += float(share)
            if fraction < end:
                break
        if int(window) != int(self.config["window"]):
            self.set_window(int(window))
        self.config["batch_size"] = int(batch)

    def batches(self, split: str = "train", epoch: int = 0, rank: int = 0, world_size: int = 1) -> Any:
        """Freshly generated windows (``steps_per_epoch`` batches, drawn when indexed, so that a resumed
        epoch skips batches without drawing them), or the fixed validation windows."""
        if split != "train":
            x, y = self.validation_windows()
            bs = int(self.config["batch_size"])
            return [{"x": torch.from_numpy(x[i:i + bs]), "y": torch.from_numpy(y[i:i + bs])}
                    for i in range(0, len(x), bs)]
        return _FreshWindows(self)

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
        if "w" in batch:
            loss = (F.cross_entropy(logits, batch["y"], reduction="none") * batch["w"]).sum() / batch["w"].sum()
        else:
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
            tp += float((p & t).sum())
            tn += float((~p & ~t).sum())
            fp += float((p & ~t).sum())
            fn += float((~p & t).sum())
        model.train(was_training)
        n = tp + tn + fp + fn
        return {"val_loss": float(np.mean(losses)), "val_accuracy": (tp + tn) / n,
                "val_precision": tp / max(tp + fp, 1.0), "val_recall": tp / max(tp + fn, 1.0)}

    # ---------------------------------------------------------------------------------- export
    def export_example(self) -> dict[str, torch.Tensor]:
        """ONNX export input (name "x"): batch 2 (dynamic batch needs >= 2, CALIBRATION.md), 48³ window."""
        return {"x": torch.zeros(2, 1, 48, 48, 48)}

    def parity_examples(self) -> list[dict[str, torch.Tensor]]:
        """Batches 1 and 3 of random windows for the ONNX parity check."""
        gen = torch.Generator().manual_seed(0)
        return [{"x": torch.randn(b, 1, 48, 48, 48, generator=gen)} for b in (1, 3)]

    def dynamic_shapes(self) -> dict[str, dict[int, Any]]:
        """A dynamic batch; the window stays fixed (the plugin tiles maps into 48³ windows)."""
        return {"x": {0: torch.export.Dim("batch", min=1, max=256)}}

    def card(self) -> dict[str, Any]:
        """Model-card entries the solvent-mask plugin reads (P_U is added after export, see :func:`calibrate_pu`)."""
        return {"input": INPUT_CARD, "output": {"name": "logits", "classes": ["protein", "solvent"]},
                "tiling": {"overlap": 16, "batch": 2}, "combination": dict(COMBINATION)}

    def export_model(self, checkpoints: list[Checkpoint]) -> torch.nn.Module:
        """The U-net of one checkpoint, or the ensemble of several (mean class probabilities)."""
        members = []
        for ckpt in checkpoints:
            net = UNet3D(base=int({**DEFAULT_CONFIG, **ckpt.config}["base"]))
            load_weights(net, ckpt)
            members.append(net.eval())
        return members[0] if len(members) == 1 else UNet3DEnsemble(members).eval()

    def export_card(self, model: torch.nn.Module, checkpoints: list[Checkpoint]) -> dict[str, Any]:
        """Architecture and training record of the exported U-net (or of every ensemble member)."""
        arch = ({"type": "UNet3D", **model.config} if len(checkpoints) == 1 else
                {"type": "UNet3DEnsemble", "members": [{"type": "UNet3D", **m.config} for m in model.members]})
        trainings = [training_entry(c) for c in checkpoints]
        return {"version": "1.0.0",
                "summary": "3D U-net (Skubák 2024, section 2.2) segmenting phasing maps into protein (0) and "
                           "solvent (1).",
                "architecture": {**arch, "parameters": count_parameters(model)},
                "training": trainings[0] if len(trainings) == 1 else {"members": trainings},
                "reference": "P. Skubák, Acta Cryst. D (2024), deep-learning map segmentation",
                **self.card()}

    def after_export(self, session: Any, card: dict[str, Any]) -> dict[str, Any]:
        """P_U (section 2.3), calibrated through the exported ONNX model as the plugin runs it; {} (and
        the plugin predicts masks without combining with Matthews) when the training sources are absent."""
        path = Path(self.config["sources"])
        if not path.is_file():
            return {}
        sources = load_sources(path)
        order = np.random.default_rng(0).permutation(len(sources))
        pick = [sources[i] for i in order[:int(self.config["n_calibration"])]]
        pu, cutoffs = calibrate_pu(session, card, pick)
        return {"p_u": {**pu, "n_crystals": len(cutoffs), "phase_errors_deg": list(CALIBRATION_PHASE_ERRORS),
                        "description": "histogram of logit cut-offs reproducing the true solvent content "
                                       "(section 2.3)"}}


class _FreshWindows:
    """``steps_per_epoch`` batches of new training windows; item i is drawn when it is asked for."""

    def __init__(self, task: SolventUNetTask) -> None:
        self.task = task

    def __len__(self) -> int:
        return int(self.task.config["steps_per_epoch"])

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        if not 0 <= i < len(self):
            raise IndexError(i)
        sampler = self.task._sampler()
        if sampler.lv_wrong_weight <= 0:
            x, y = sampler.sample(int(self.task.config["batch_size"]))
            return {"x": torch.from_numpy(x), "y": torch.from_numpy(y)}
        x, y, w = sampler.sample_weighted(int(self.task.config["batch_size"]))
        return {"x": torch.from_numpy(x), "y": torch.from_numpy(y), "w": torch.from_numpy(w)}


def training_entry(ckpt: Checkpoint) -> dict[str, Any]:
    """The card's training record of one checkpoint (the last row of its run folder's metrics.csv)."""
    metrics_path = ckpt.path.parent / "metrics.csv" if ckpt.path else None
    rows = list(csv.DictReader(open(metrics_path))) if metrics_path and metrics_path.exists() else []
    config = {**DEFAULT_CONFIG, **ckpt.config}
    return {
        "data": "simulated SAD-like phasing maps of corpus crystals (real cells + single chains packed in "
                "P212121/P21/C2), true masks by gemmi SolventMasker (vdW radii, islands < 50 Å³ removed)",
        "test_families_excluded": list(TEST_FAMILIES),
        "phase_error_range_deg": config.get("phase_error_range"),
        "init": (config.get("train") or {}).get("init_from"),
        "steps": ckpt.state.get("step"), "minutes": round(float(ckpt.state.get("elapsed") or 0) / 60, 1),
        "best_val_accuracy": ckpt.state.get("best"),
        "val_phase_error_deg": config.get("val_phase_error"),
        "loss": "cross-entropy", "optimizer": "Adam",
        "last_metrics": rows[-1] if rows else None,
    }


def calibrate_pu(session: Any, card: dict, sources: list,
                 phase_errors: tuple[float, ...] = CALIBRATION_PHASE_ERRORS,
                 seed: int = 3, edges: tuple[float, ...] | None = None) -> tuple[dict, list[float]]:
    """P_U of section 2.3: histogram of per-crystal logit cut-offs that reproduce the true solvent content.

    Each source is given one simulated phasing map per phase error (degrees, cycled over the sources).
    """
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


def export_spec(checkpoints: list[Checkpoint], options: ExportOptions) -> ExportSpec:
    """The exporter's view of a run of this task (see :func:`crysplugins.training.onnx_export.task_export_spec`)."""
    config = checkpoints[0].config
    return task_export_spec(SolventUNetTask(config), checkpoints, config)
