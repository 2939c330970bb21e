"""Reader (and small writing helpers) for the Patterson/density dataset format (docs/CONTRACTS.md).

A dataset is a folder with ``meta.json``, ``index.tsv``, ``shards/<split>-<nu>x<nv>x<nw>-<k>.npz`` (maps
already normalised to [-1, 1] with the constants in ``meta["normalisation"]``), ``partial.npz`` and
``test_mtz/``.  ``meta.json`` is written last by the builder, so its presence marks a finished dataset.

Usage::

    ds = open_dataset("data_build/dipeptide")
    for shard in ds.shards("train"):
        arrays = shard.load()        # patterson, density (n,nu,nv,nw), ids, sequence_index, cell, d_min
    boxes = ds.partial_boxes()       # (20, B, B, B) float32, residue order meta["residue_types"]

No torch here: the inference plugins use the same reader.
"""
from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from crysplugins.crystal.io import atomic_path
from crysplugins.crystal.standardise import RESIDUE_TYPES
from crysplugins.errors import CrysError

FORMAT = "crysplugins-patterson-v1"
INDEX_COLUMNS = ["id", "split", "shard", "row", "source", "family", "sequence", "a", "b", "c", "alpha",
                 "beta", "gamma", "nu", "nv", "nw", "d_min"]
_INT = {"row", "nu", "nv", "nw"}
_FLOAT = {"a", "b", "c", "alpha", "beta", "gamma", "d_min"}


@dataclass
class Shard:
    """One ``.npz`` file of examples that share a map shape."""

    path: Path
    split: str
    shape: tuple[int, int, int]
    n: int

    def load(self) -> dict[str, np.ndarray]:
        """All arrays of the shard: patterson, density, ids, sequence_index, cell, d_min."""
        with np.load(self.path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}


@dataclass
class PattersonDataset:
    root: Path
    meta: dict
    index: list[dict] = field(repr=False)

    def shards(self, split: str) -> list[Shard]:
        """Shards of ``split`` ('train' or 'test'), sorted by name."""
        counts: dict[str, int] = {}
        shapes: dict[str, tuple[int, int, int]] = {}
        for row in self.index:
            if row["split"] == split:
                counts[row["shard"]] = counts.get(row["shard"], 0) + 1
                shapes[row["shard"]] = (row["nu"], row["nv"], row["nw"])
        return [Shard(self.root / "shards" / name, split, shapes[name], counts[name])
                for name in sorted(counts)]

    def examples(self, split: str | None = None) -> list[dict]:
        return [r for r in self.index if split is None or r["split"] == split]

    def partial_boxes(self) -> np.ndarray:
        """(20, B, B, B) float32 normalised densities of the standard residues (meta residue order)."""
        with np.load(self.root / "partial.npz", allow_pickle=False) as z:
            return z["boxes"]

    def sequences(self, sequence_index: np.ndarray) -> list[str]:
        """One-letter sequences of a shard's ``sequence_index`` rows (residue order meta["residue_types"]; the
        −1 padding dropped)."""
        types = self.meta.get("residue_types", RESIDUE_TYPES)
        return ["".join(types[k] for k in row if k >= 0) for row in np.asarray(sequence_index)]

    def normalise(self, x: np.ndarray, kind: str) -> np.ndarray:
        """Apply the dataset's normalisation for ``kind`` ('patterson', 'density', 'partial')."""
        c = self.meta["normalisation"][kind]
        return np.clip((x - c["offset"]) / c["scale"], -1, 1)

    def denormalise(self, x: np.ndarray, kind: str) -> np.ndarray:
        c = self.meta["normalisation"][kind]
        return x * c["scale"] + c["offset"]

    def test_mtz(self, example_id: str) -> tuple[Path, Path]:
        """(amplitudes MTZ with F, SIGF; phases MTZ with F, PHI) of a test example."""
        d = self.root / "test_mtz"
        return d / f"{example_id}_amplitudes.mtz", d / f"{example_id}_phases.mtz"


def read_index(path: Path) -> list[dict]:
    rows = []
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            for k in _INT:
                row[k] = int(row[k])
            for k in _FLOAT:
                row[k] = float(row[k])
            rows.append(row)
    return rows


def write_index(path: Path, rows: list[dict]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh, delimiter="\t", lineterminator="\n")
        w.writerow(INDEX_COLUMNS)
        for r in rows:
            w.writerow([_fmt(r[k]) for k in INDEX_COLUMNS])


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)


def open_dataset(path: str | os.PathLike) -> PattersonDataset:
    """Open a finished dataset folder; one clear CrysError when it is not one."""
    root = Path(path)
    meta_path = root / "meta.json"
    if not root.is_dir():
        raise CrysError(f"The dataset folder {root} does not exist.")
    if not meta_path.exists():
        raise CrysError(f"{root} is not a finished crysplugins dataset (no meta.json; is the build still running?).")
    try:
        meta = json.loads(meta_path.read_text())
    except ValueError as exc:
        raise CrysError(f"The dataset metadata {meta_path} is not valid JSON ({exc}).") from None
    if meta.get("format") != FORMAT:
        raise CrysError(f"{root} has dataset format {meta.get('format')!r}, expected {FORMAT!r}.")
    return PattersonDataset(root, meta, read_index(root / "index.tsv"))
