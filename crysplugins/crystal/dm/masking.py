"""The solvent mask inside the cycles: local standard deviation (Abrahams & Leslie 1996) or a provider.

The local standard deviation of the current map in a cone-weighted sphere (FFT convolution, the kernel
of :mod:`crysplugins.crystal.masks`) is a protein score; minus it is the solvent score.  A *mask
provider* (e.g. the solvent U-net re-run on the current map, Skubák 2024 section 2.3) returns its own
solvent score on any grid; it is resampled to the engine's grid.  Either score is averaged over
symmetry mates on a gemmi grid (``symmetrize_avg``) and thresholded so that the solvent fraction S of
the cell is solvent.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import gemmi
import numpy as np

from crysplugins.interface import CrystalMap


@dataclass
class MaskRequest:
    """What a mask provider gets: the cycle (0-based), the current map on the engine grid, and a function
    giving the current map (same coefficients) on any other grid shape, e.g. the U-net's Shannon grid."""

    cycle: int
    map: CrystalMap
    map_on: Callable[[tuple[int, int, int]], CrystalMap]
    d_min: float
    mean_fom: float


#: A provider returns a solvent score (higher = more solvent-like, e.g. P(solvent)) as a CrystalMap on
#: any grid of the same cell, or an array on the engine's grid.
MaskProvider = Callable[[MaskRequest], "CrystalMap | np.ndarray"]


class LocalDeviation:
    """Local standard deviation with cached kernels (one FFT of the kernel per radius)."""

    def __init__(self, cell: gemmi.UnitCell, shape: tuple[int, int, int]) -> None:
        self.cell, self.shape = cell, shape
        self._kernels: dict[float, np.ndarray] = {}

    def __call__(self, rho: np.ndarray, radius: float, statistic: str = "sd", level: float = 0.0) -> np.ndarray:
        """Local standard deviation (``"sd"``) or local rms about ``level`` (``"rms"``, e/Å³: the
        solvent level, so that a high protein mean counts as well as a high variance)."""
        key = round(float(radius) * 4) / 4  # 0.25 Å steps: few kernels over a shrinking schedule
        if key not in self._kernels:
            self._kernels[key] = cone_kernel_ft(self.cell, self.shape, key)
        k = self._kernels[key]
        if statistic == "rms":
            d2 = (rho - level) ** 2
            return np.sqrt(np.clip(np.fft.irfftn(np.fft.rfftn(d2) * k, s=rho.shape, axes=(0, 1, 2)), 0.0, None))
        m1 = np.fft.irfftn(np.fft.rfftn(rho) * k, s=rho.shape, axes=(0, 1, 2))
        m2 = np.fft.irfftn(np.fft.rfftn(rho * rho) * k, s=rho.shape, axes=(0, 1, 2))
        return np.sqrt(np.clip(m2 - m1 * m1, 0.0, None))


def cone_kernel_ft(cell: gemmi.UnitCell, shape: tuple[int, int, int], radius: float) -> np.ndarray:
    """rfftn of the normalised cone weight 1 − r/R (r < R, Å) on the periodic grid; only the sphere's
    bounding box is visited."""
    n = np.array(shape)
    # the box must cover the sphere also in oblique cells: use the reciprocal-axis extents
    rec = cell.reciprocal()
    ext = np.ceil(radius * np.array([rec.a, rec.b, rec.c]) * n).astype(int) + 1
    ext = np.minimum(ext, n // 2)
    du, dv, dw = (np.arange(-e, e + 1) for e in ext)
    fu, fv, fw = np.meshgrid(du / n[0], dv / n[1], dw / n[2], indexing="ij")
    frac = np.stack([fu, fv, fw], axis=-1).reshape(-1, 3)
    r = np.sqrt(((frac @ np.array(cell.orth.mat, dtype=np.float64).T) ** 2).sum(1))
    w = np.clip(1.0 - r / radius, 0.0, None)
    keep = w > 0
    grid = np.zeros(shape)
    idx = [np.mod(np.rint(frac[keep, i] * n[i]).astype(int), n[i]) for i in range(3)]
    np.add.at(grid, tuple(idx), w[keep])
    return np.fft.rfftn(grid / grid.sum())


def resample(values: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """Nearest-grid-point resampling of a whole-cell array to ``shape`` (fractional coordinates)."""
    arr = np.asarray(values)
    if arr.shape == tuple(shape):
        return arr
    idx = [np.floor(np.arange(n) * m / n + 0.5).astype(int) % m for n, m in zip(shape, arr.shape)]
    return arr[np.ix_(*idx)]


def symmetrized(values: np.ndarray, cell: gemmi.UnitCell, spacegroup: gemmi.SpaceGroup) -> np.ndarray:
    """``values`` averaged over the space group's symmetry mates on a gemmi grid."""
    if spacegroup.number == 1:
        return values
    cm = CrystalMap.from_array(np.asarray(values, dtype=np.float32), cell, spacegroup)
    cm.grid.symmetrize_avg()
    return cm.array.astype(np.float64)


def solvent_mask(score: np.ndarray, solvent_fraction: float) -> np.ndarray:
    """Boolean mask (True = solvent) of the ``solvent_fraction`` highest solvent scores.

    The cut is by value, so tied scores (symmetry mates, a binary provider mask) stay together; of
    ``score >= cut`` and ``score > cut`` the one nearer the wanted count is taken."""
    flat = np.asarray(score).ravel()
    n = int(round(solvent_fraction * flat.size))
    if n <= 0:
        return np.zeros(np.shape(score), dtype=bool)
    cut = np.partition(flat, flat.size - n)[flat.size - n]
    ge = np.asarray(score) >= cut
    gt = np.asarray(score) > cut
    return ge if abs(int(ge.sum()) - n) <= abs(int(gt.sum()) - n) else gt
