"""Same-shape batches of a ``crysplugins-patterson-v1`` dataset, shared by every task that reads one.

Maps of one batch must share a grid shape, so examples are grouped into per-shape bins (RecCrysFormer
paper 000, appendix B: "examples that belong to tensor-size bins smaller than our minimum batch size are
excluded", here ``min_batch``).  Arrays stay as stored (float16) until a batch is made.

Sequences are residue indices, -1 where a shorter fragment has no residue: they go to the network as
int64 unchanged.
"""
from __future__ import annotations

from typing import Any, Iterator

import numpy as np
import torch

#: arrays every shard holds per example
EXAMPLE_KEYS = ("patterson", "density", "sequence_index", "ids")

Plan = list[tuple[tuple, np.ndarray]]


class ShapeBins:
    """Examples of one split grouped by grid shape: ``bins[shape][key]`` stacks the arrays of ``keys``."""

    def __init__(self, parts: list[dict[str, np.ndarray]], keys: tuple[str, ...] | None = None) -> None:
        by_shape: dict[tuple, list[dict]] = {}
        for arrays in parts:
            by_shape.setdefault(tuple(arrays["patterson"].shape[1:]), []).append(arrays)
        self.bins: dict[tuple, dict[str, np.ndarray]] = {}
        for shape, group in sorted(by_shape.items()):
            names = keys or tuple(group[0])
            self.bins[shape] = {k: np.concatenate([p[k] for p in group]) for k in names}

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

    def largest_shape(self) -> tuple:
        """The grid shape with the most examples."""
        return max(self.bins, key=lambda s: len(self.bins[s]["ids"]))


def plan_batches(bins: ShapeBins, batch_size: int, min_batch: int, shuffle: np.random.Generator | None,
                 rank: int = 0, world_size: int = 1) -> Plan:
    """(shape, example indices) per batch.  ``shuffle`` (training) permutes examples within bins, drops
    batches smaller than ``min_batch`` and permutes the batches; every rank gets the same number."""
    plan: Plan = []
    for shape, b in bins.bins.items():
        n = len(b["ids"])
        order = shuffle.permutation(n) if shuffle is not None else np.arange(n)
        for start in range(0, n, batch_size):
            idx = np.sort(order[start:start + batch_size])
            if shuffle is None or len(idx) >= min(min_batch, batch_size):
                plan.append((shape, idx))
    if shuffle is not None:
        plan = [plan[i] for i in shuffle.permutation(len(plan))]
    per_rank = len(plan) // world_size
    return plan[rank:per_rank * world_size:world_size]


def map_batch(b: dict[str, np.ndarray], idx: np.ndarray) -> dict[str, torch.Tensor]:
    """Patterson (B, 1, N1, N2, N3), density (B, 1, N1, N2, N3) and sequence (B, R) int64 tensors."""
    return {"patterson": torch.from_numpy(b["patterson"][idx].astype(np.float32)).unsqueeze(1),
            "density": torch.from_numpy(b["density"][idx].astype(np.float32)).unsqueeze(1),
            "sequence": torch.from_numpy(b["sequence_index"][idx].astype(np.int64))}


class BatchList:
    """A lazy, indexable list of batches for one epoch and one rank (the Trainer can resume mid-epoch)."""

    def __init__(self, bins: ShapeBins, plan: Plan) -> None:
        self.bins, self.plan = bins, plan

    def __len__(self) -> int:
        return len(self.plan)

    def __getitem__(self, i: int) -> dict[str, Any]:
        shape, idx = self.plan[i]
        return self.make(self.bins.bins[shape], idx, i)

    def make(self, b: dict[str, np.ndarray], idx: np.ndarray, i: int) -> dict[str, Any]:
        """The batch of examples ``idx`` of bin ``b`` (batch number ``i``); subclasses add inputs."""
        return map_batch(b, idx)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for i in range(len(self)):
            yield self[i]
