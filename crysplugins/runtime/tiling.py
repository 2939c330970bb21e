"""Overlapping periodic tiles over a whole unit-cell grid, with blended overlaps.

A network trained on ``window``³ boxes (48³ for the solvent U-net, Skubák 2024 section 2.3) is applied to
a whole unit cell of any size: along each axis of n grid points, k = ceil(n / (window - overlap)) tiles
start at evenly spaced points round(i n / k) and wrap periodically past the cell edge, so every voxel is
covered (also when n < window, where a tile covers more than one period).  Per-voxel outputs of the
tiles are averaged with separable weights that fall towards the tile faces (a raised cosine with a floor
of ``edge_weight``), so seams from the convolutions' zero padding are damped.  Unlike the paper's
non-overlapping cut, overlaps are the rule here.

numpy only; the caller supplies ``predict(batch) -> outputs`` (e.g. an onnxruntime session).
"""
from __future__ import annotations

from typing import Callable, Iterator

import numpy as np

ProgressFn = Callable[[float, str], None]


def tile_starts(n: int, window: int = 48, overlap: int = 16) -> list[int]:
    """Start indices of the tiles along an axis of ``n`` points (tiles wrap periodically)."""
    if window <= overlap:
        raise ValueError("The overlap must be smaller than the window.")
    if n <= 0:
        raise ValueError("An axis needs at least one grid point.")
    stride = window - overlap
    k = max(1, -(-n // stride))
    return sorted({int(round(i * n / k)) % n for i in range(k)})


def tile_origins(shape: tuple[int, int, int], window: int = 48, overlap: int = 16) -> list[tuple[int, int, int]]:
    """All tile origins (u, v, w) covering a periodic grid of ``shape``."""
    su, sv, sw = (tile_starts(n, window, overlap) for n in shape)
    return [(u, v, w) for u in su for v in sv for w in sw]


def wrap_indices(origin: tuple[int, int, int], window: int, shape: tuple[int, ...]) -> list[np.ndarray]:
    return [(o + np.arange(window)) % n for o, n in zip(origin, shape)]


def extract_window(arr: np.ndarray, origin: tuple[int, int, int], window: int) -> np.ndarray:
    """A ``window``³ block of a periodic 3-D array starting at ``origin`` (indices wrap)."""
    return arr[np.ix_(*wrap_indices(origin, window, arr.shape))]


def blend_weights(window: int, edge_weight: float = 0.05) -> np.ndarray:
    """Separable raised-cosine weights (window³), 1 in the centre and ``edge_weight`` at the faces."""
    t = (np.arange(window) + 0.5) / window
    w1 = edge_weight + (1.0 - edge_weight) * np.sin(np.pi * t) ** 2
    return (w1[:, None, None] * w1[None, :, None] * w1[None, None, :]).astype(np.float64)


def _batches(origins: list, size: int) -> Iterator[list]:
    for i in range(0, len(origins), size):
        yield origins[i:i + size]


def predict_tiled(arr: np.ndarray, predict: Callable[[np.ndarray], np.ndarray], window: int = 48,
                  overlap: int = 16, batch_size: int = 2, edge_weight: float = 0.05,
                  progress: ProgressFn | None = None) -> np.ndarray:
    """Apply ``predict`` to overlapping periodic tiles of ``arr`` and blend the results.

    ``arr`` has shape (nu, nv, nw).  ``predict`` takes (b, 1, window, window, window) float32 and returns
    (b, C, window, window, window).  Returns (C, nu, nv, nw): the weighted mean over all tiles covering
    each voxel.
    """
    arr = np.asarray(arr, dtype=np.float32)
    shape = arr.shape
    origins = tile_origins(shape, window, overlap)
    weight = blend_weights(window, edge_weight)
    acc: np.ndarray | None = None
    wsum = np.zeros(shape, dtype=np.float64)
    done = 0
    for group in _batches(origins, batch_size):
        x = np.stack([extract_window(arr, o, window) for o in group])[:, None]
        y = np.asarray(predict(x), dtype=np.float64)
        if acc is None:
            acc = np.zeros((y.shape[1],) + shape, dtype=np.float64)
        for j, o in enumerate(group):
            idx = np.ix_(*wrap_indices(o, window, shape))
            if window <= min(shape):  # indices within one tile are distinct: plain fancy-index add
                wsum[idx] += weight
                for c in range(acc.shape[0]):
                    acc[c][idx] += y[j, c] * weight
            else:  # a tile longer than the cell repeats indices: unbuffered add
                np.add.at(wsum, idx, weight)
                for c in range(acc.shape[0]):
                    np.add.at(acc[c], idx, y[j, c] * weight)
        done += len(group)
        if progress is not None:
            progress(done / len(origins), f"tile {done}/{len(origins)}")
    assert acc is not None
    return (acc / wsum[None]).astype(np.float32)


#: test-time augmentation: the 8 mirror combinations of the three window axes (the U-net of paper 004 was
#: trained with flips and 90° rotations, section 2.2, so each is an equally valid view of a window)
FLIP_SETS: tuple[tuple[int, ...], ...] = ((), (2,), (3,), (4,), (2, 3), (2, 4), (3, 4), (2, 3, 4))


def with_flips(predict: Callable[[np.ndarray], np.ndarray], n: int) -> Callable[[np.ndarray], np.ndarray]:
    """``predict`` averaged over the first ``n`` (1-8) of :data:`FLIP_SETS`: each batch (b, 1, w, w, w) is
    mirrored, predicted and mirrored back.  ``n`` = 1 is ``predict`` itself."""
    if not 1 <= int(n) <= len(FLIP_SETS):
        raise ValueError(f"test-time augmentation takes 1 to {len(FLIP_SETS)} views, not {n}")
    if int(n) == 1:
        return predict

    def averaged(x: np.ndarray) -> np.ndarray:
        total = None
        for axes in FLIP_SETS[:int(n)]:
            xf = np.ascontiguousarray(np.flip(x, axis=axes)) if axes else x
            y = np.asarray(predict(xf), dtype=np.float64)
            y = np.flip(y, axis=axes) if axes else y
            total = y if total is None else total + y
        return total / int(n)

    return averaged


def coverage(shape: tuple[int, int, int], window: int = 48, overlap: int = 16) -> np.ndarray:
    """How many tiles cover each voxel (int array of ``shape``); every entry is >= 1."""
    count = np.zeros(shape, dtype=np.int64)
    for o in tile_origins(shape, window, overlap):
        np.add.at(count, np.ix_(*wrap_indices(o, window, shape)), 1)
    return count
