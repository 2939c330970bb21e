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

from pathlib import Path
from typing import Any

import numpy as np
import torch

from crysplugins.errors import CrysError
from crysplugins.training.losses import density_loss, pearson_per_example
from crysplugins.training.nets.reccrysformer import RecCrysFormer, model_config

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


def _np_pearson(a: np.ndarray, b: np.ndarray) -> float:
    a = a.ravel().astype(np.float64) - a.mean()
    b = b.ravel().astype(np.float64) - b.mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 0 else 0.0


class _Bins:
    """Examples of one split grouped by grid shape; arrays kept as stored (float16) until batched."""

    def __init__(self, shards: list[dict[str, np.ndarray]]) -> None:
        by_shape: dict[tuple, list[dict]] = {}
        for arrays in shards:
            by_shape.setdefault(tuple(arrays["patterson"].shape[1:]), []).append(arrays)
        self.bins: dict[tuple, dict[str, np.ndarray]] = {}
        for shape, parts in sorted(by_shape.items()):
            self.bins[shape] = {k: np.concatenate([p[k] for p in parts]) for k in
                                ("patterson", "density", "sequence_index", "ids")}

    def __len__(self) -> int:
        return sum(len(b["ids"]) for b in self.bins.values())

    def truncate(self, n: int, rng: np.random.Generator) -> None:
        """Keep a random subset of ``n`` examples (spread over the bins proportionally)."""
        total = len(self)
        if n >= total:
            return
        for shape, b in self.bins.items():
            k = max(1, int(round(n * len(b["ids"]) / total)))
            idx = np.sort(rng.choice(len(b["ids"]), size=min(k, len(b["ids"])), replace=False))
            self.bins[shape] = {key: v[idx] for key, v in b.items()}


class _BatchList:
    """A lazy, indexable list of batches (dicts of tensors) for one epoch and one rank."""

    def __init__(self, bins: _Bins, plan: list[tuple[tuple, np.ndarray]]) -> None:
        self.bins, self.plan = bins, plan

    def __len__(self) -> int:
        return len(self.plan)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        shape, idx = self.plan[i]
        b = self.bins.bins[shape]
        return {
            "patterson": torch.from_numpy(b["patterson"][idx].astype(np.float32)).unsqueeze(1),
            "density": torch.from_numpy(b["density"][idx].astype(np.float32)).unsqueeze(1),
            "sequence": torch.from_numpy(b["sequence_index"][idx].astype(np.int64)),
        }

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]


class RecCrysFormerTask:
    """The task object the Trainer drives (see ``crysplugins/training/loop.py``)."""

    name = "reccrysformer"

    def __init__(self, config: dict[str, Any]) -> None:
        cfg = {**TASK_DEFAULTS, **config}
        cfg["loss"] = {**TASK_DEFAULTS["loss"], **(config.get("loss") or {})}
        self.config = cfg
        if not cfg.get("data"):
            raise CrysError("The reccrysformer task needs a dataset folder (--data DIR).")
        from crysplugins.datasets.store import open_dataset

        self.ds = open_dataset(cfg["data"])
        self.meta = self.ds.meta
        self._splits: dict[str, _Bins] = {}
        self.batch_size = int((cfg.get("train") or {}).get("batch_size", cfg.get("batch_size", 16)))
        self.seed = int((cfg.get("train") or {}).get("seed", cfg.get("seed", 0)))

    # ------------------------------------------------------------------------------------- data
    def split(self, name: str) -> _Bins:
        if name not in self._splits:
            shards = [s.load() for s in self.ds.shards(name)]
            if not shards:
                raise CrysError(f"The dataset {self.ds.root} has no '{name}' examples.")
            bins = _Bins(shards)
            if name == "train" and self.config.get("max_train_examples"):
                bins.truncate(int(self.config["max_train_examples"]), np.random.default_rng(self.seed))
            self._splits[name] = bins
        return self._splits[name]

    def batches(self, split: str = "train", epoch: int = 0, rank: int = 0, world_size: int = 1) -> _BatchList:
        """Shuffled same-shape batches of ``batch_size``; every rank gets the same number of batches."""
        bins = self.split(split)
        rng = np.random.default_rng([self.seed, epoch])
        min_batch = int(self.config["min_batch"])
        plan: list[tuple[tuple, np.ndarray]] = []
        for shape, b in bins.bins.items():
            n = len(b["ids"])
            order = rng.permutation(n) if split == "train" else np.arange(n)
            for start in range(0, n, self.batch_size):
                idx = np.sort(order[start:start + self.batch_size])
                if len(idx) >= min(min_batch, self.batch_size) or split != "train":
                    plan.append((shape, idx))
        if split == "train":
            plan = [plan[i] for i in rng.permutation(len(plan))]
        per_rank = len(plan) // world_size
        plan = plan[rank:per_rank * world_size:world_size]
        return _BatchList(bins, plan)

    def residue_boxes(self) -> np.ndarray:
        return np.asarray(self.ds.partial_boxes(), dtype=np.float32)

    # ------------------------------------------------------------------------------------ model
    def model_settings(self) -> dict[str, Any]:
        """The model config with data-dependent values (partial box, residue count) filled in."""
        mcfg = dict(self.config.get("model") or {})
        mcfg.setdefault("partial_box", int(self.meta.get("partial_box", 24)))
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
        lc = self.config["loss"]
        return density_loss(pred, batch["density"], c_mse=float(lc.get("c_mse", 0.9999)),
                            c_p=float(lc.get("c_p", 5e-5)), c_fft=lc.get("c_fft"),
                            hand_invariant=bool(lc.get("hand_invariant", False)))

    # ------------------------------------------------------------------------------- evaluation
    def mean_maps(self) -> dict[tuple, np.ndarray]:
        """Mean normalised training density per grid shape (the trivial baseline predictor)."""
        if not hasattr(self, "_mean_maps"):
            train = self.split("train")
            self._mean_maps = {shape: b["density"].astype(np.float32).mean(axis=0)
                               for shape, b in train.bins.items()}
        return self._mean_maps

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
                out.append({
                    "patterson": torch.from_numpy(b["patterson"][sel].astype(np.float32)).unsqueeze(1),
                    "density": torch.from_numpy(b["density"][sel].astype(np.float32)).unsqueeze(1),
                    "sequence": torch.from_numpy(b["sequence_index"][sel].astype(np.int64)),
                    "shape": shape, "ids": b["ids"][sel],
                })
        return out

    def evaluate(self, model: torch.nn.Module, limit: int | None = None) -> dict[str, float]:
        """Mean Pearson (eq. 7), |FFT| Pearson and the mean-map baseline on the test subset.

        "test_pearson_either_hand" is the Pearson with the better of the two hands of the truth (a
        diagnostic for hand-invariant training, not the target metric).
        """
        from crysplugins.training.losses import fft_amplitudes, invert_through_centre

        device = next(model.parameters()).device
        means = self.mean_maps()
        pcs, best, fpcs, base = [], [], [], []
        for batch in self.eval_batches(limit):
            pred = model(batch["patterson"].to(device), batch["sequence"].to(device)).float().cpu()
            pc = pearson_per_example(pred, batch["density"])
            pcs += pc.tolist()
            best += torch.maximum(pc, pearson_per_example(pred, invert_through_centre(batch["density"]))).tolist()
            fpcs += pearson_per_example(fft_amplitudes(pred), fft_amplitudes(batch["density"])).tolist()
            mean_map = means.get(batch["shape"])
            if mean_map is not None:
                base += [_np_pearson(mean_map, d[0].numpy()) for d in batch["density"]]
        return {"test_pearson": float(np.mean(pcs)), "test_pearson_either_hand": float(np.mean(best)),
                "test_fft_pearson": float(np.mean(fpcs)),
                "test_baseline_pearson": float(np.mean(base)) if base else float("nan"),
                "test_n": len(pcs), "test_baseline_n": len(base)}

    # ---------------------------------------------------------------------------------- export
    def export_example(self) -> dict[str, torch.Tensor]:
        """Inputs for ONNX export: two maps of the most common training shape and their sequences."""
        train = self.split("train")
        shape = max(train.bins, key=lambda s: len(train.bins[s]["ids"]))
        b = train.bins[shape]
        idx = np.arange(min(2, len(b["ids"])))
        if len(idx) < 2:
            idx = np.array([0, 0])
        return {"patterson": torch.from_numpy(b["patterson"][idx].astype(np.float32)).unsqueeze(1),
                "sequence": torch.from_numpy(b["sequence_index"][idx].astype(np.int64))}

    def state(self) -> dict[str, Any]:
        """What a checkpoint keeps about the data (the card's normalisation and grid come from here)."""
        meta = self.meta
        train_n = sum(len(b["ids"]) for b in self.split("train").bins.values()) if "train" in self._splits else None
        return {"dataset": str(Path(self.ds.root).resolve()), "meta": {k: meta.get(k) for k in (
            "format", "n_residues", "d_min", "sampling_rate", "fixed_cell", "normalisation", "partial_box",
            "residue_types", "splits", "families", "build")}, "train_examples_used": train_n}


def make_task(config: dict[str, Any]) -> RecCrysFormerTask:
    if (config.get("recycling") or {}).get("recycle_from"):  # a recycling run (issue #5)
        from crysplugins.training.recycling_task import RecyclingTask

        return RecyclingTask(config)
    return RecCrysFormerTask(config)
