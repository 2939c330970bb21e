"""Training task 'reccrysformer': Patterson map (+ sequence) -> electron density (paper 000).

Reads a dataset in the ``crysplugins-patterson-v1`` format (docs/CONTRACTS.md) with
:func:`crysplugins.datasets.store.open_dataset`.  Maps are already normalised to [-1, 1]; examples are
batched within same-shape bins (appendix B: "examples that belong to tensor-size bins smaller than our
minimum batch size are excluded", here ``min_batch``).

Config (JSON; see ``crysplugins/training/configs/reccrysformer_*.json``)::

    {"task": "reccrysformer", "data": "data_build/dipeptide",
     "model": {... RecCrysFormer keys ...},
     "loss": {"c_mse": 0.9999, "c_p": 5e-5},
     "train": {... Trainer keys (batch_size, epochs, lr, max_lr, ...) ...},
     "eval_examples": 256, "min_batch": 2, "max_train_examples": null}

Evaluation: mean Pearson (eq. 7) over ``eval_examples`` test maps, the |FFT| Pearson, and the
mean-training-map baseline (the mean normalised training density of the same grid shape; CALIBRATION.md
says to always report it beside the model).
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from crysplugins.crystal.metrics import pearson
from crysplugins.datasets.store import open_dataset
from crysplugins.errors import CrysError
from crysplugins.training.batching import EXAMPLE_KEYS, BatchList, ShapeBins, map_batch, plan_batches
from crysplugins.training.checkpoint import Checkpoint, load_checkpoint, load_weights
from crysplugins.training.config import refuse_unknown
from crysplugins.training.losses import density_loss, fft_amplitudes, invert_through_centre, pearson_per_example
from crysplugins.training.nets.conv import set_fft
from crysplugins.training.nets.reccrysformer import RecCrysFormer, model_config
from crysplugins.training.onnx_export import ExportOptions, ExportSpec
from crysplugins.training.recycling import card_recycling_entry

@dataclass
class LossSettings:
    """Weights of eq. 8: MSE, the Pearson term and the |FFT| Pearson term (``c_fft`` None: ``c_p``, as in
    the paper); ``hand_invariant`` scores each example against the better hand of its target."""

    c_mse: float = 0.9999
    c_p: float = 5e-5
    c_fft: float | None = None
    hand_invariant: bool = False

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "LossSettings":
        refuse_unknown(cls, values, "loss")
        try:
            s = cls(**values)
            s.c_mse, s.c_p = float(s.c_mse), float(s.c_p)
            s.c_fft = None if s.c_fft is None else float(s.c_fft)
        except (TypeError, ValueError):
            raise CrysError(f"The loss weights must be numbers ({values}).") from None
        if not all(np.isfinite(v) for v in (s.c_mse, s.c_p, s.c_fft if s.c_fft is not None else 0.0)):
            raise CrysError(f"The loss weights must be finite ({values}).")
        s.hand_invariant = bool(s.hand_invariant)
        return s


TASK_DEFAULTS: dict[str, Any] = {
    "data": None,
    "model": {},
    "loss": {"c_mse": 0.9999, "c_p": 5e-5},
    "train": {},
    "eval_examples": 256,
    "min_batch": 2,
    "max_train_examples": None,
    "seed": 0,
}


class RecCrysFormerTask:
    """The task object the Trainer drives (see ``crysplugins/training/loop.py``)."""

    name = "reccrysformer"
    output_name = "density"

    def __init__(self, config: dict[str, Any]) -> None:
        cfg = {**TASK_DEFAULTS, **config}
        cfg["loss"] = {**TASK_DEFAULTS["loss"], **(config.get("loss") or {})}
        self.loss_settings = LossSettings.from_dict(cfg["loss"])
        self.config = cfg
        if not cfg.get("data"):
            raise CrysError("The reccrysformer task needs a dataset folder (--data DIR).")
        self.ds = open_dataset(cfg["data"])
        self.meta = self.ds.meta
        self._splits: dict[str, ShapeBins] = {}
        self.batch_size = int((cfg.get("train") or {}).get("batch_size", cfg.get("batch_size", 16)))
        self.seed = int((cfg.get("train") or {}).get("seed", cfg.get("seed", 0)))

    # ------------------------------------------------------------------------------------- data
    def split(self, name: str) -> ShapeBins:
        if name not in self._splits:
            shards = [s.load() for s in self.ds.shards(name)]
            if not shards:
                raise CrysError(f"The dataset {self.ds.root} has no '{name}' examples.")
            bins = ShapeBins(shards, EXAMPLE_KEYS)
            if name == "train" and self.config.get("max_train_examples"):
                bins.truncate(int(self.config["max_train_examples"]), np.random.default_rng(self.seed))
            self._splits[name] = bins
        return self._splits[name]

    def batches(self, split: str = "train", epoch: int = 0, rank: int = 0, world_size: int = 1) -> BatchList:
        """Shuffled same-shape batches of ``batch_size``; every rank gets the same number of batches."""
        bins = self.split(split)
        shuffle = np.random.default_rng([self.seed, epoch]) if split == "train" else None
        return BatchList(bins, plan_batches(bins, self.batch_size, int(self.config["min_batch"]), shuffle,
                                            rank, world_size))

    def residue_boxes(self) -> np.ndarray:
        return np.asarray(self.ds.partial_boxes(), dtype=np.float32)

    # ------------------------------------------------------------------------------------ model
    def model_settings(self) -> dict[str, Any]:
        """The model config with data-dependent values (partial box, residue count) filled in."""
        mcfg = dict(self.config.get("model") or {})
        box = int(self.meta.get("partial_box", 24))
        if mcfg.get("partial", True) and mcfg.setdefault("partial_box", box) != box:
            raise CrysError(f"The config's model.partial_box is {mcfg['partial_box']} voxels but the dataset's "
                            f"residue boxes are {box}; train with --set model.partial_box={box}.")
        n_res = self.meta.get("n_residues")
        if isinstance(n_res, int):
            mcfg.setdefault("max_residues", n_res)
        return model_config(mcfg)

    def build_model(self, config: dict[str, Any] | None = None) -> RecCrysFormer:
        torch.manual_seed(self.seed)
        model = RecCrysFormer(self.model_settings())
        if model.config["partial"]:
            model.set_residue_boxes(torch.from_numpy(self.residue_boxes()))
        return model

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        pred = model(batch["patterson"], batch["sequence"])
        ls = self.loss_settings
        return density_loss(pred, batch["density"], c_mse=ls.c_mse, c_p=ls.c_p, c_fft=ls.c_fft,
                            hand_invariant=ls.hand_invariant)

    # ------------------------------------------------------------------------------- evaluation
    def mean_maps(self) -> dict[tuple, np.ndarray]:
        """Mean normalised training density per grid shape (the trivial baseline predictor)."""
        if not hasattr(self, "_mean_maps"):
            train = self.split("train")
            self._mean_maps = {shape: b["density"].astype(np.float32).mean(axis=0)
                               for shape, b in train.bins.items()}
        return self._mean_maps

    def baseline_pearsons(self, batch: dict[str, Any]) -> list[float]:
        """Pearson of the mean training map of the batch's grid shape with each true map ([] if none)."""
        mean_map = self.mean_maps().get(batch["shape"])
        return [] if mean_map is None else [pearson(mean_map, d[0].numpy()) for d in batch["density"]]

    def eval_batches(self, limit: int | None = None) -> list[dict[str, torch.Tensor]]:
        """Deterministic test batches (a fixed subset of ``limit`` examples spread over the shapes)."""
        test = self.split("test")
        limit = int(limit or self.config["eval_examples"] or len(test))
        total = len(test)
        out = []
        rng = np.random.default_rng(12345)
        for shape, b in test.bins.items():
            n = len(b["ids"])
            k = n if limit >= total else max(1, int(round(limit * n / total)))
            idx = np.sort(rng.choice(n, size=min(k, n), replace=False))
            for start in range(0, len(idx), self.batch_size):
                sel = idx[start:start + self.batch_size]
                out.append({**map_batch(b, sel), "shape": shape, "ids": b["ids"][sel]})
        return out

    def evaluate(self, model: torch.nn.Module, limit: int | None = None) -> dict[str, float]:
        """Mean Pearson (eq. 7), |FFT| Pearson and the mean-map baseline on the test subset.

        "test_pearson_either_hand" is the Pearson with the better of the two hands of the truth (a
        diagnostic for hand-invariant training, not the target metric).
        """
        device = next(model.parameters()).device
        pcs, best, fpcs, base = [], [], [], []
        for batch in self.eval_batches(limit):
            pred = model(batch["patterson"].to(device), batch["sequence"].to(device)).float().cpu()
            pc = pearson_per_example(pred, batch["density"])
            pcs += pc.tolist()
            best += torch.maximum(pc, pearson_per_example(pred, invert_through_centre(batch["density"]))).tolist()
            fpcs += pearson_per_example(fft_amplitudes(pred), fft_amplitudes(batch["density"])).tolist()
            base += self.baseline_pearsons(batch)
        return {"test_pearson": float(np.mean(pcs)), "test_pearson_either_hand": float(np.mean(best)),
                "test_fft_pearson": float(np.mean(fpcs)),
                "test_baseline_pearson": float(np.mean(base)) if base else float("nan"),
                "test_n": len(pcs), "test_baseline_n": len(base)}

    # ---------------------------------------------------------------------------------- export
    def export_example(self) -> dict[str, torch.Tensor]:
        """Inputs for ONNX export: two maps of the most common training shape and their sequences."""
        train = self.split("train")
        b = train.bins[train.largest_shape()]
        idx = np.array([0, 1]) if len(b["ids"]) >= 2 else np.array([0, 0])
        batch = map_batch(b, idx)
        return {"patterson": batch["patterson"], "sequence": batch["sequence"]}

    def state(self) -> dict[str, Any]:
        """What a checkpoint keeps about the data (the card's normalisation and grid come from here)."""
        meta = self.meta
        train_n = sum(len(b["ids"]) for b in self.split("train").bins.values()) if "train" in self._splits else None
        return {"dataset": str(Path(self.ds.root).resolve()), "meta": {k: meta.get(k) for k in (
            "format", "n_residues", "d_min", "sampling_rate", "fixed_cell", "normalisation", "partial_box",
            "residue_types", "splits", "families", "build")}, "train_examples_used": train_n}


def checkpoint_model_settings(ckpt: Checkpoint) -> dict[str, Any]:
    """Full RecCrysFormer settings of a checkpoint: the recorded model config (or the task state's
    ``model_settings``), else the config's "model" section with the data-dependent keys filled in the way
    the task does; ``in_channels`` always from the first conv's weight."""
    ts = ckpt.task_state
    if ckpt.model_config:
        settings = dict(ckpt.model_config)
    elif ts.get("model_settings"):
        settings = dict(ts["model_settings"])
    else:
        m = dict(ckpt.config.get("model") or {})
        meta = ts.get("meta") or {}
        m.setdefault("partial_box", int(meta.get("partial_box") or 24))
        if isinstance(meta.get("n_residues"), int):
            m.setdefault("max_residues", meta["n_residues"])
        settings = model_config(m)
    w = ckpt.model.get("embed.conv.weight")
    if w is not None:
        settings["in_channels"] = int(w.shape[1])
    return settings


def load_run_model(run_dir: str | Path) -> tuple[RecCrysFormer, dict[str, Any], str]:
    """(model in eval mode, its settings, an identity string) from a run folder's checkpoint."""
    run = Path(run_dir)
    if not (run / "checkpoint.pt").is_file():
        raise CrysError(f"{run_dir} is not a training run folder (no checkpoint.pt).")
    ckpt = load_checkpoint(run)
    settings = checkpoint_model_settings(ckpt)
    settings["use_fft"] = False
    model = RecCrysFormer(settings)
    load_weights(model, ckpt)
    h = hashlib.sha256()
    for k, v in sorted(ckpt.model.items()):
        h.update(k.encode())
        h.update(v.detach().cpu().numpy().tobytes())
    return model.eval(), settings, f"torch:{run.resolve().name}:{h.hexdigest()[:16]}"


# ---------------------------------------------------------------------------------------------- export

def model_from_checkpoint(ckpt: Checkpoint) -> RecCrysFormer:
    """The RecCrysFormer of a checkpoint, in eval mode with direct (exportable) convolutions."""
    if ckpt.model_config is None:
        raise CrysError(f"{ckpt.path} has no model config; it was not written by the RecCrysFormer task.")
    model = RecCrysFormer(ckpt.model_config)
    load_weights(model, ckpt)
    model.eval()
    set_fft(model, False)
    return model


def short_path(path: Any) -> Any:
    """The last two parts of an absolute path ('/home/me/data_build/dipeptide' -> 'data_build/dipeptide'):
    a model card names where its data came from without the build machine's folders."""
    if not isinstance(path, str) or not os.path.isabs(path):
        return path
    return "/".join(Path(path).parts[-2:])


def short_paths(value: Any) -> Any:
    """``value`` with every absolute path in it (nested dicts and lists too) shortened by :func:`short_path`."""
    if isinstance(value, dict):
        return {k: short_paths(v) for k, v in value.items()}
    if isinstance(value, list):
        return [short_paths(v) for v in value]
    return short_path(value)


def dataset_summary(dataset: str | None) -> dict[str, Any]:
    """Ranges of cells and grid shapes of the training split (for the card), when the dataset is here."""
    if not dataset or not (Path(dataset) / "meta.json").exists():
        return {}
    ds = open_dataset(dataset)
    train, test = ds.examples("train"), ds.examples("test")
    if not train:
        return {}

    def column(*keys: str) -> np.ndarray:
        return np.array([r[k] for r in train for k in keys], dtype=float)

    lengths, angles = column("a", "b", "c"), column("alpha", "beta", "gamma")
    return {"train_examples": len(train), "test_examples": len(test),
            "cell_lengths": [float(lengths.min()), float(lengths.max())],
            "cell_angles": [float(angles.min()), float(angles.max())],
            "grid_shapes": [list(s) for s in sorted({(r["nu"], r["nv"], r["nw"]) for r in train})],
            "train_families": ds.meta.get("families", {}).get("train"),
            "test_families": ds.meta.get("families", {}).get("test")}


def parity_shapes(trained: list[tuple], patch: int) -> list[tuple]:
    """The smallest, middle and largest trained grid shapes (or standard ones), three in all."""
    pool = trained or [(16, 16, 16), (16, 24, 32), (32, 32, 32)]
    shapes = sorted(pool, key=lambda s: np.prod(s))
    shapes = list(dict.fromkeys([shapes[0], shapes[len(shapes) // 2], shapes[-1]]))
    for s in ((16, 16, 16), (8, 16, 24), (24, 24, 24)):
        if len(shapes) >= 3:
            break
        if s not in shapes:
            shapes.append(s)
    return shapes


def _dynamic_shapes(mcfg: dict[str, Any]) -> dict[str, dict[int, Any]]:
    """Batch, grid (multiples of the patch size) and residue count vary."""
    p, maxp = mcfg["patch"], mcfg["max_patches_per_axis"]
    b = torch.export.Dim("batch", min=1, max=1024)
    dyn: dict[str, dict[int, Any]] = {"patterson": {
        0: b, 2: p * torch.export.Dim("p1", min=1, max=maxp), 3: p * torch.export.Dim("p2", min=1, max=maxp),
        4: p * torch.export.Dim("p3", min=1, max=maxp)}}
    if mcfg["partial"]:
        dyn["sequence"] = {0: b} if mcfg["max_residues"] == 1 else {
            0: b, 1: torch.export.Dim("residues", min=1, max=mcfg["max_residues"])}
    return dyn


def _parity_inputs(shapes: list[tuple], lengths: list[int], mcfg: dict[str, Any],
                   seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """Random normalised maps of each shape (batch 2 and 1) with random sequences of each length."""
    rng = np.random.default_rng(seed)
    out = []
    for shape in shapes:
        for batch, n_res in zip((2, 1) * len(lengths), [n for n in lengths for _ in (0, 1)]):
            x = rng.uniform(-0.3, 1.0, size=(batch, mcfg["in_channels"], *shape)).astype(np.float32)
            s = rng.integers(0, 20, size=(batch, n_res)).astype(np.int64)
            out.append({"patterson": torch.from_numpy(x), "sequence": torch.from_numpy(s)}
                       if mcfg["partial"] else {"patterson": torch.from_numpy(x)})
    return out


def _parity_lengths(n_res: Any) -> list[int]:
    """Fragment lengths the ONNX parity check runs: the one length, or the shortest, a middle and the
    longest of a [lo, hi] range."""
    if isinstance(n_res, (list, tuple)):
        lo, hi = int(n_res[0]), int(n_res[-1])
        return sorted({lo, (lo + hi) // 2, hi})
    return [int(n_res)]


def export_spec(checkpoints: list[Checkpoint], options: ExportOptions) -> ExportSpec:
    """A RecCrysFormer run ready for ONNX: the model, its inputs and its card (no dataset needed)."""
    if len(checkpoints) != 1:
        raise CrysError("A RecCrysFormer run exports one checkpoint at a time.")
    ckpt = checkpoints[0]
    model = model_from_checkpoint(ckpt)
    mcfg = model.config
    meta = ckpt.task_state.get("meta") or {}
    summary = dataset_summary(ckpt.task_state.get("dataset"))
    n_res = meta.get("n_residues") or mcfg["max_residues"]  # one length, or [lo, hi] for a mixed dataset
    lengths = _parity_lengths(n_res)
    trained = [tuple(s) for s in summary.get("grid_shapes", [])]
    shapes = options.shapes or parity_shapes(trained, mcfg["patch"])
    for s in shapes:
        if any(n % mcfg["patch"] for n in s):
            raise CrysError(f"Grid shape {s} is not a multiple of the patch size {mcfg['patch']}.")
    ex_shape = max(trained, key=lambda s: np.prod(s)) if trained else shapes[-1]
    example = {"patterson": torch.zeros(2, mcfg["in_channels"], *ex_shape)}
    if mcfg["partial"]:
        example["sequence"] = torch.zeros(2, lengths[-1], dtype=torch.long)
    return ExportSpec(model=model, example=example, output_name="density",
                      parity=_parity_inputs([tuple(ex_shape)] if options.static else shapes, lengths, mcfg),
                      dynamic_shapes=None if options.static else _dynamic_shapes(mcfg),
                      card=_card(ckpt, model, meta, summary, n_res, options))


def _card(ckpt: Checkpoint, model: RecCrysFormer, meta: dict[str, Any], summary: dict[str, Any], n_res: int | list[int],
          options: ExportOptions) -> dict[str, Any]:
    """The card entries of a RecCrysFormer: inputs, architecture, normalisation, grid, data, training."""
    mcfg, p = model.config, model.config["patch"]
    d_min, rate = meta.get("d_min"), meta.get("sampling_rate")
    # a dataset drawn over a resolution range has no one spacing: the runtime takes d_min / mean rate
    spacing = float(d_min) / float(rate) if isinstance(d_min, (int, float)) and isinstance(rate, (int, float)) else None
    build_cfg = (meta.get("build") or {}).get("config") or {}
    summ_path = ckpt.path.parent / "summary.json" if ckpt.path else None
    train_summary = json.loads(summ_path.read_text()) if summ_path and summ_path.exists() else {}
    card: dict[str, Any] = {
        "predictor": "patterson-density",
        "description": "RecCrysFormer (paper 000): normalised Patterson map + sequence -> normalised "
                       "electron density, trained with crysplugins.",
        "inputs": [{"name": "patterson", "shape": ["batch", mcfg["in_channels"], "nu", "nv", "nw"],
                    "dtype": "float32", "meaning": "Patterson map (channel 0) normalised per card"}]
        + ([{"name": "sequence", "shape": ["batch", "residues"], "dtype": "int64",
             "meaning": "residue indices into residue_types"}] if mcfg["partial"] else []),
        "outputs": [{"name": "density", "shape": ["batch", 1, "nu", "nv", "nw"], "dtype": "float32",
                     "meaning": "normalised density in [-1, 1]; e/Å³ = value * scale + offset"}],
        "architecture": mcfg,
        "parameters": int(sum(t.numel() for t in model.parameters())),
        "normalisation": meta.get("normalisation"),
        "residue_types": meta.get("residue_types", "ACDEFGHIKLMNPQRSTVWY"),
        "n_residues": n_res,
        "grid": {"d_min": d_min, "sampling_rate": rate, "spacing": spacing,
                 "multiple": int(build_cfg.get("grid_multiple", p)), "patch": p,
                 "max_grid": int(build_cfg.get("max_grid") or p * mcfg["max_patches_per_axis"]),
                 "trained_shapes": summary.get("grid_shapes")},
        "data": {"dataset": short_path(ckpt.task_state.get("dataset")), "format": meta.get("format"),
                 "n_residues": meta.get("n_residues"), "fixed_cell": meta.get("fixed_cell"),
                 "splits": meta.get("splits"), "families": meta.get("families"),
                 "train_examples_used": ckpt.task_state.get("train_examples_used"), **summary,
                 "build": {k: short_paths(v) for k, v in (meta.get("build") or {}).items()
                           if k in ("config", "date", "seconds")}},
        "training": {"config": ckpt.config.get("train"), "loss": ckpt.config.get("loss"),
                     "steps": ckpt.state.get("step"), "epochs": ckpt.state.get("epoch"),
                     "examples_seen": ckpt.state.get("examples"),
                     "minutes": train_summary.get("minutes"),
                     "examples_per_second": train_summary.get("examples_per_second"),
                     "machine": platform.machine() + ", " + str(os.cpu_count()) + " CPU cores visible"},
    }
    if options.hand_model:
        card["hand_model"] = options.hand_model
    example = ckpt.path.parent / "example.json" if ckpt.path else None
    if example and example.exists():
        card["example"] = json.loads(example.read_text())
    if ckpt.task_state.get("recycling"):  # how a recycled model's template channel was trained
        card["recycling"] = card_recycling_entry(ckpt.task_state["recycling"])
    return card
