"""Recycling templates on disk and the two-channel model input they make (numpy only).

A template set (``crysplugins dataset templates``, :mod:`crysplugins.datasets.templates`) stores, per
dataset shard, ``<dataset>/templates/<name>/<shard>.npz``.  Input channels (fixed convention, also used by
the exported ONNX model and the inference plugin): channel 0 = normalised Patterson map, channel
:data:`TEMPLATE_CHANNEL` (1) = template density in [-1, 1] (RecCrysFormer paper 000, section 4).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from crysplugins.errors import CrysError

#: index of the template channel in the model input (0 is the Patterson map)
TEMPLATE_CHANNEL = 1


def choose_templates(prediction: np.ndarray, refined: np.ndarray, is_refined: np.ndarray,
                     refined_prob: float, rng: np.random.Generator | None) -> tuple[np.ndarray, np.ndarray]:
    """Per example: the refined template with probability ``refined_prob`` where ``is_refined``, else the
    prediction.  ``rng=None`` means evaluation: every refined example takes its refined template.

    ``prediction``, ``refined``: (n, N1, N2, N3) normalised maps; ``is_refined``: (n,) bool.
    Returns (templates float32 (n, N1, N2, N3), used_refined (n,) bool).
    """
    is_refined = np.asarray(is_refined, dtype=bool)
    if not 0.0 <= refined_prob <= 1.0:
        raise ValueError("refined_prob must be in [0, 1]")
    if rng is None:
        use = is_refined.copy()
    else:
        use = is_refined & (rng.random(is_refined.shape[0]) < refined_prob)
    sel = use.reshape((-1,) + (1,) * (np.ndim(prediction) - 1))
    out = np.where(sel, np.asarray(refined, dtype=np.float32), np.asarray(prediction, dtype=np.float32))
    return out, use


def with_template(patterson: np.ndarray, template: np.ndarray) -> np.ndarray:
    """(n, N1, N2, N3) or (n, 1, N1, N2, N3) Patterson maps + (n, N1, N2, N3) templates -> (n, 2, N1, N2, N3)."""
    p = np.asarray(patterson, dtype=np.float32)
    if p.ndim == 5:
        p = p[:, 0]
    t = np.asarray(template, dtype=np.float32)
    if t.shape != p.shape:
        raise ValueError(f"template shape {t.shape} differs from the Patterson map shape {p.shape}")
    return np.stack([p, t], axis=1)


class TemplateStore:
    """Templates of one run for one dataset: ``<dataset>/templates/<name>/<shard>.npz``.

    Each file holds ``rows`` (row in the dataset shard), ``ids``, ``prediction`` and ``refined``
    (n, N1, N2, N3) normalised maps, ``score``, ``is_refined`` (see :mod:`crysplugins.datasets.templates`).
    """

    def __init__(self, dataset_root: str | Path, name: str) -> None:
        self.root = Path(dataset_root) / "templates" / name
        if not self.root.is_dir():
            raise CrysError(f"No templates '{name}' in {dataset_root} (run 'crysplugins dataset templates' first).")
        self.name = name
        self._cache: dict[str, dict[str, np.ndarray] | None] = {}

    @property
    def info(self) -> dict[str, Any]:
        p = self.root / "info.json"
        return json.loads(p.read_text()) if p.exists() else {}

    def shard(self, shard_name: str) -> dict[str, np.ndarray] | None:
        """Arrays of one shard's templates (``shard_name`` as in index.tsv, e.g. 'train-32x32x32-0.npz'),
        or None when the shard has none (yet)."""
        key = Path(shard_name).stem
        if key not in self._cache:
            path = self.root / f"{key}.npz"
            if path.exists():
                with np.load(path, allow_pickle=False) as z:
                    arrays = {k: z[k] for k in z.files}
                arrays["_pos"] = {int(r): i for i, r in enumerate(arrays["rows"])}  # type: ignore[assignment]
                self._cache[key] = arrays
            else:
                self._cache[key] = None
        return self._cache[key]

    def lookup(self, shard_name: str, rows: Iterable[int]) -> dict[str, np.ndarray] | None:
        """prediction, refined, is_refined, score for ``rows`` of a shard; None if any row has no template."""
        arrays = self.shard(shard_name)
        if arrays is None:
            return None
        pos = arrays["_pos"]  # type: ignore[index]
        try:
            idx = np.array([pos[int(r)] for r in rows], dtype=np.int64)
        except KeyError:
            return None
        return {k: arrays[k][idx] for k in ("prediction", "refined", "is_refined", "score")}

    def rows(self, shard_name: str) -> np.ndarray:
        """Rows of a shard that have templates (empty when none)."""
        arrays = self.shard(shard_name)
        return np.zeros(0, dtype=np.int64) if arrays is None else np.asarray(arrays["rows"], dtype=np.int64)
