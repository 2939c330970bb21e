"""Solvent masks: the true mask of a model, the classical local-variance mask, and mask scores.

Conventions: a mask is a :class:`~crysplugins.interface.CrystalMap` (or array) on the whole unit cell with
**solvent = 1, protein = 0**.  Distances are in Å.

* :func:`true_mask` - the "true" mask of a deposited model (Skubák 2024, section 2.2): gemmi's
  ``SolventMasker`` with van der Waals radii, applied with the space-group symmetry of the grid (so
  symmetry mates are masked too), small solvent islands inside the protein removed.
* :func:`local_variance_mask` - the mask of Abrahams & Leslie (1996) as in DM/Parrot: the local standard
  deviation of the density in a cone-weighted sphere, thresholded so that a given fraction of the cell is
  solvent.  The sphere radius comes from the resolution (:func:`local_variance_radius`).  The smoothing is
  a periodic convolution done with numpy FFTs (gemmi has no local-variance filter).
* :func:`mask_scores` - accuracy, precision, recall, specificity and F1 of the solvent class.

numpy and gemmi only (no torch).
"""
from __future__ import annotations

from dataclasses import dataclass

import gemmi
import numpy as np

from crysplugins.errors import CrysError
from crysplugins.interface import CrystalMap

#: Minimum volume (Å³) of an enclosed solvent region that is kept as solvent; smaller ones become protein.
ISLAND_MIN_VOLUME = 50.0


def _grid_for(cell: gemmi.UnitCell, spacegroup: gemmi.SpaceGroup, shape: tuple[int, int, int]) -> gemmi.FloatGrid:
    grid = gemmi.FloatGrid(*shape)
    grid.set_unit_cell(cell)
    grid.spacegroup = spacegroup
    return grid


def true_mask(structure: gemmi.Structure, shape: tuple[int, int, int] | None = None, spacing: float | None = None,
              island_min_volume: float = ISLAND_MIN_VOLUME, name: str = "true-mask") -> CrystalMap:
    """The solvent mask of a model in its crystal (solvent = 1) on the whole unit cell.

    Give the grid ``shape`` (nu, nv, nw) or a ``spacing`` in Å (the grid is then rounded up to sizes that
    suit FFTs and the space group).  The structure must carry its unit cell and space group; every atom of
    the first model (ligands included, waters excluded by the caller if wanted) and its symmetry mates
    are masked with van der Waals radii.  ``island_min_volume`` (Å³) removes enclosed solvent pockets.
    """
    cell = structure.cell
    if not cell.is_crystal():
        raise CrysError("The structure has no crystal unit cell, so it has no solvent mask.")
    sg = structure.find_spacegroup() or gemmi.SpaceGroup("P 1")
    if shape is not None:
        grid = _grid_for(cell, sg, tuple(int(s) for s in shape))
    else:
        if spacing is None:
            raise CrysError("true_mask needs a grid shape or a spacing.")
        grid = gemmi.FloatGrid()
        grid.spacegroup = sg
        grid.set_unit_cell(cell)
        grid.set_size_from_spacing(float(spacing), gemmi.GridSizeRounding.Up)
    masker = gemmi.SolventMasker(gemmi.AtomicRadiiSet.VanDerWaals)
    masker.island_min_volume = float(island_min_volume)
    masker.put_mask_on_float_grid(grid, structure[0])
    return CrystalMap(grid=grid, name=name, units="solvent=1")


def solvent_fraction(mask: CrystalMap | np.ndarray) -> float:
    """Fraction of grid points that are solvent (mask value > 0.5)."""
    arr = mask.array if isinstance(mask, CrystalMap) else np.asarray(mask)
    return float((arr > 0.5).mean())


# ------------------------------------------------------------------------------------ local variance

def local_variance_radius(d_min: float, fom: float | None = None) -> float:
    """Sphere radius (Å) for the local-variance mask at resolution ``d_min`` (Å) and mean figure of merit.

    R = d_min x (1.5 + 2.5 (1 - <m>)), kept between 3 and 6 Å; without a FOM, <m> = 0.5.  Poorer phases
    need a larger sphere (CALIBRATION.md: 3 Å suits good phases, 4.5-6 Å poor ones); the coefficients were
    chosen on one structure (1RX2 at 2 Å, a benchmark test-family entry: a choice that can only favour
    this baseline in the benchmark).
    """
    m = 0.5 if fom is None else float(np.clip(fom, 0.0, 1.0))
    return float(np.clip(d_min * (1.5 + 2.5 * (1.0 - m)), 3.0, 6.0))


def _cone_kernel_ft(cell: gemmi.UnitCell, shape: tuple[int, int, int], radius: float) -> np.ndarray:
    """FT (rfftn layout) of a normalised cone weight w(r) = 1 - r/R (r < R) centred on the origin."""
    nu, nv, nw = shape
    # signed grid offsets, wrapped to the nearest image
    fu = np.fft.fftfreq(nu, d=1.0 / nu) / nu  # fractional offsets in [-0.5, 0.5)
    fv = np.fft.fftfreq(nv, d=1.0 / nv) / nv
    fw = np.fft.fftfreq(nw, d=1.0 / nw) / nw
    orth = np.array(cell.orth.mat, dtype=np.float64)  # fractional -> Cartesian (Å)
    # only points within R matter: restrict to the bounding box of the sphere in each direction
    frac = np.stack(np.meshgrid(fu, fv, fw, indexing="ij"), axis=-1)
    xyz = frac @ orth.T
    r = np.sqrt((xyz ** 2).sum(-1))
    w = np.clip(1.0 - r / radius, 0.0, None)
    w /= w.sum()
    return np.fft.rfftn(w)


def local_std(cmap: CrystalMap, radius: float) -> np.ndarray:
    """Local standard deviation of ``cmap`` in a cone-weighted sphere of ``radius`` Å (periodic)."""
    rho = cmap.array.astype(np.float64)
    kft = _cone_kernel_ft(cmap.cell, cmap.shape, radius)
    mean = np.fft.irfftn(np.fft.rfftn(rho) * kft, s=rho.shape, axes=(0, 1, 2))
    mean2 = np.fft.irfftn(np.fft.rfftn(rho * rho) * kft, s=rho.shape, axes=(0, 1, 2))
    return np.sqrt(np.clip(mean2 - mean * mean, 0.0, None))


def threshold_fraction(score: np.ndarray, fraction: float) -> np.ndarray:
    """Binary mask (1 = solvent) setting the ``fraction`` of points with the *highest* score to solvent.

    The cut is by value (score >= the n-th highest score), so points with equal scores - e.g. symmetry
    mates of a symmetry-averaged map - are all in or all out, and the mask keeps the map's symmetry.
    """
    if not 0.0 <= fraction <= 1.0:
        raise CrysError(f"A solvent fraction must lie between 0 and 1, not {fraction}.")
    flat = np.asarray(score).ravel()
    n = int(round(fraction * flat.size))
    if n <= 0:
        return np.zeros(np.shape(score), dtype=np.float32)
    kth = np.partition(flat, flat.size - n)[flat.size - n]
    return (np.asarray(score) >= kth).astype(np.float32)


def local_variance_mask(cmap: CrystalMap, solvent_fraction: float, d_min: float | None = None,
                        radius: float | None = None, fom: float | None = None,
                        symmetrize: bool = True) -> tuple[CrystalMap, CrystalMap]:
    """Abrahams & Leslie (1996) local-variance mask.  Returns (solvent score map, binary mask).

    The score is minus the local standard deviation (higher = more solvent-like), averaged over
    symmetry-related points when ``symmetrize``; the binary mask marks the ``solvent_fraction`` of points
    with the lowest local standard deviation as solvent.  ``radius`` (Å) defaults to
    :func:`local_variance_radius` of ``d_min`` (or of 3 x the largest grid spacing when unknown) and
    the mean figure of merit ``fom``.
    """
    if radius is None:
        if d_min is None:
            d_min = 3.0 * max(cmap.spacing())
        radius = local_variance_radius(d_min, fom)
    sd = local_std(cmap, radius)
    score = CrystalMap.from_array((-sd).astype(np.float32), cmap.cell, cmap.spacegroup, name="local-variance-score")
    if symmetrize and cmap.spacegroup is not None and cmap.spacegroup.number != 1:
        score.grid.symmetrize_avg()
    binary = threshold_fraction(score.array, solvent_fraction)
    mask = CrystalMap.from_array(binary, cmap.cell, cmap.spacegroup, name="local-variance-mask", units="solvent=1")
    return score, mask


# ------------------------------------------------------------------------------------------- scores

@dataclass(frozen=True)
class MaskScores:
    """Scores of a predicted mask against a true one; the positive class is solvent."""

    accuracy: float
    precision: float
    recall: float
    specificity: float
    f1: float
    predicted_fraction: float
    true_fraction: float

    def as_dict(self) -> dict[str, float]:
        return {k: round(float(v), 4) for k, v in self.__dict__.items()}


def mask_scores(predicted: CrystalMap | np.ndarray, truth: CrystalMap | np.ndarray) -> MaskScores:
    """Accuracy, precision, recall, specificity, F1 (solvent = positive) of ``predicted`` vs ``truth``."""
    p = (predicted.array if isinstance(predicted, CrystalMap) else np.asarray(predicted)) > 0.5
    t = (truth.array if isinstance(truth, CrystalMap) else np.asarray(truth)) > 0.5
    if p.shape != t.shape:
        raise CrysError(f"Masks on different grids cannot be compared ({p.shape} vs {t.shape}).")
    tp = float(np.sum(p & t))
    tn = float(np.sum(~p & ~t))
    fp = float(np.sum(p & ~t))
    fn = float(np.sum(~p & t))
    n = tp + tn + fp + fn
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    specificity = tn / (tn + fp) if tn + fp else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return MaskScores(accuracy=(tp + tn) / n, precision=precision, recall=recall, specificity=specificity,
                      f1=f1, predicted_fraction=(tp + fp) / n, true_fraction=(tp + fn) / n)
