"""Synthetic P1 unit cells for isolated fragments (paper 000, appendix B, "Unit Cell Configuration").

* angles alpha, beta, gamma each drawn independently from 90/100/110/120 degrees with probabilities
  1/3, 1/3, 2/9, 1/9 (a degenerate draw, 120/120/120 of zero volume, is redrawn);
* lengths start from the raw max-min coordinate ranges along x, y, z (Å) and grow iteratively until every
  intermolecular contact under lattice translations is > 3.45 Å (:data:`MIN_CONTACT`); fragments still
  clashing after :data:`MAX_ITER` steps are discarded;
* optional snapping of lengths to whole grid bins (``n * spacing * multiple``) so maps fall into few shapes;
* reindexing so that a <= b <= c (shortest axis first; an odd axis permutation is combined with an
  inversion of the basis, which keeps the basis right-handed and so never mirrors the fragment);
* the centre of mass (atomic masses) is moved to the cell centre (fractional 0.5, 0.5, 0.5).

All lengths in Å, angles in degrees.  Everything is numpy on (n, 3) Cartesian coordinate arrays.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import gemmi
import numpy as np

ANGLES = np.array([90.0, 100.0, 110.0, 120.0])
ANGLE_P = np.array([1 / 3, 1 / 3, 2 / 9, 1 / 9])
MIN_CONTACT = 3.45  # Å, appendix B
STEP = 0.5  # Å per enlargement step
MAX_ITER = 40
_OFFSETS = np.array([[i, j, k] for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)], float)


@dataclass
class Placement:
    """A fragment placed in its P1 cell: Cartesian positions (Å) in gemmi's orthogonalisation of ``cell``."""

    cell: gemmi.UnitCell
    positions: np.ndarray
    min_contact: float  # shortest intermolecular distance (Å); inf when above 6.9 Å


def volume_factor(angles: Sequence[float]) -> float:
    """V / (abc) for the given angles (degrees); 0 for a degenerate cell."""
    ca, cb, cg = np.cos(np.radians(angles))
    v = 1 - ca * ca - cb * cb - cg * cg + 2 * ca * cb * cg
    return float(np.sqrt(max(v, 0.0)))


def draw_angles(rng: np.random.Generator) -> tuple[float, float, float]:
    """alpha, beta, gamma (degrees), each from 90/100/110/120 with p = 1/3, 1/3, 2/9, 1/9."""
    while True:
        ang = rng.choice(ANGLES, size=3, p=ANGLE_P)
        if volume_factor(ang) > 0.05:
            return float(ang[0]), float(ang[1]), float(ang[2])


def _matrices(lengths: Sequence[float], angles: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    cell = gemmi.UnitCell(*lengths, *angles)
    return np.array(cell.orth.mat.tolist()), np.array(cell.frac.mat.tolist())


_HALF = np.array([t for t in _OFFSETS if tuple(t) > (0, 0, 0)])  # 13 translations; -t gives the same
_HALF2 = np.array([[i, j, k] for i in range(-2, 3) for j in range(-2, 3) for k in range(-2, 3)
                   if (i, j, k) > (0, 0, 0)], float)  # 62 translations within reach 2


def contacts_by_translation(positions: np.ndarray, lengths: Sequence[float], angles: Sequence[float],
                            tree=None, reach: int = 2, bound: float = np.inf
                            ) -> tuple[np.ndarray, np.ndarray]:
    """Shortest atom-atom distance (Å) between the fragment and its copy under each lattice
    translation t in {-reach..reach}^3 with t > 0 (the copy at -t gives the same distance).

    Returns (translations (m,3), distances (m,)): 13 translations for reach 1 (used while growing a
    cell), 62 for reach 2 (the final check; tight oblique cells can have close copies at 2a + b ...).
    Distances above ``bound`` are reported as inf (faster).
    """
    orth, _ = _matrices(lengths, angles)
    tree = tree if tree is not None else _tree(positions)
    ts = _HALF if reach == 1 else _HALF2
    shifts = ts @ orth.T
    # copies further apart than the fragment's diameter + MIN_CONTACT cannot touch: skip them
    centre_ = positions.mean(0)
    radius = np.sqrt(((positions - centre_) ** 2).sum(1).max())
    dist = np.full(len(ts), np.inf)
    near = np.nonzero(np.linalg.norm(shifts, axis=1) <= 2 * radius + MIN_CONTACT + 1e-6)[0]
    if len(near):
        pts = (positions[None, :, :] + shifts[near, None, :]).reshape(-1, 3)
        if tree is _NO_SCIPY:  # plain numpy (scipy not installed): all pairs
            diff = pts[:, None, :] - positions[None, :, :]
            d = np.sqrt(np.einsum("pqi,pqi->pq", diff, diff).min(1))
            d[d > bound] = np.inf
        else:
            d, _ = tree.query(pts, k=1, distance_upper_bound=bound)
        dist[near] = d.reshape(len(near), -1).min(1)
    return ts, dist


_NO_SCIPY = object()


def _tree(positions: np.ndarray):
    """A scipy cKDTree of the positions (fast contact search), or a marker for the numpy fallback."""
    try:
        from scipy.spatial import cKDTree
    except ImportError:
        return _NO_SCIPY
    return cKDTree(positions)


def min_contact(positions: np.ndarray, lengths: Sequence[float], angles: Sequence[float]
                ) -> tuple[float, np.ndarray]:
    """Shortest distance (Å) between an atom and any lattice-translated copy of the fragment.

    Brute force over all atom pairs: each pair's fractional difference is reduced to the nearest
    lattice vector and its 26 neighbours are tried (t = 0 excluded).  Returns (distance, axes) where
    ``axes`` (3,) bool marks the axes involved in contacts <= :data:`MIN_CONTACT`.  Slower than
    :func:`contacts_by_translation`, used to check it.
    """
    orth, frac = _matrices(lengths, angles)
    f = positions @ frac.T
    iu, ju = np.triu_indices(len(f))
    df = f[iu] - f[ju]
    n0 = np.round(df)
    t = n0[:, None, :] + _OFFSETS[None, :, :]
    d = (df[:, None, :] - t) @ orth.T
    dist = np.sqrt(np.einsum("pki,pki->pk", d, d))
    dist[np.all(t == 0, axis=2)] = np.inf
    bad = dist <= MIN_CONTACT
    axes = np.any(t[bad] != 0, axis=0) if bad.any() else np.zeros(3, bool)
    return float(dist.min()), axes


def _grow(positions, lengths, ang, tree, step_min: float, reach: int = 1) -> tuple[float, np.ndarray]:
    """Distances under lattice translations and the per-axis growth needed (Å) to clear the clashes."""
    ts, dist = contacts_by_translation(positions, lengths, ang, tree, reach, bound=2 * MIN_CONTACT)
    grow = np.zeros(3)
    for t, d in zip(ts, dist):
        if d <= MIN_CONTACT:
            inc = max(step_min, MIN_CONTACT - d + 0.05)
            grow = np.maximum(grow, inc * (t != 0))
    return float(dist.min()), grow


def _snap(lengths: np.ndarray, bin_len: float | None) -> np.ndarray:
    if not bin_len:
        return lengths
    return np.ceil(lengths / bin_len - 1e-6) * bin_len


def reindex(positions: np.ndarray, lengths: Sequence[float], angles: Sequence[float]
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Permute axes so a <= b <= c; returns (positions in the new cell's frame, lengths, angles).

    The fragment is only rotated (proper rotation), never mirrored.
    """
    lengths = np.asarray(lengths, float)
    angles = np.asarray(angles, float)
    order = np.argsort(lengths, kind="stable")
    _, frac = _matrices(lengths, angles)
    f = positions @ frac.T
    parity = np.linalg.det(np.eye(3)[order])
    new_f = f[:, order] * parity
    new_len, new_ang = lengths[order], angles[order]
    orth2, _ = _matrices(new_len, new_ang)
    return new_f @ orth2.T, new_len, new_ang


def centre(positions: np.ndarray, masses: np.ndarray, cell: gemmi.UnitCell) -> np.ndarray:
    """Translate so that the mass-weighted centre is at the cell centre (fractional 0.5, 0.5, 0.5)."""
    com = (positions * masses[:, None]).sum(0) / masses.sum()
    mid = np.array(cell.orth.apply(gemmi.Fractional(0.5, 0.5, 0.5)).tolist())
    return positions + (mid - com)


def place(positions: np.ndarray, masses: np.ndarray, rng: np.random.Generator | None = None,
          angles: Sequence[float] | None = None, bin_len: float | None = None,
          fixed_cell: Sequence[float] | None = None) -> Placement | None:
    """Put a fragment in a P1 cell (see module doc).  Returns None when it still clashes.

    ``bin_len`` (Å) snaps each length up to a multiple of it (grid spacing x bin size) so that maps come
    in few shapes.  ``fixed_cell`` (a b c alpha beta gamma) skips the cell search: the fragment is only
    centred, and discarded when it clashes in that cell.
    """
    positions = np.asarray(positions, float)
    if fixed_cell is not None:
        lengths, ang = np.array(fixed_cell[:3], float), np.array(fixed_cell[3:], float)
        _, dist = contacts_by_translation(positions, lengths, ang)
        d = float(dist.min())
        if d <= MIN_CONTACT:
            return None
        cell = gemmi.UnitCell(*lengths, *ang)
        return Placement(cell, centre(positions, masses, cell), d)
    if angles is None:
        if rng is None:
            raise ValueError("place() needs rng or angles")
        angles = draw_angles(rng)
    ang = np.array(angles, float)
    tree = _tree(positions)
    lengths = np.maximum(positions.max(0) - positions.min(0), 1.0)
    reach = 1  # cheap while growing; the result is confirmed with reach 2 (and growth goes on if needed)
    for _ in range(MAX_ITER):
        d, grow = _grow(positions, lengths, ang, tree, STEP, reach)
        if d > MIN_CONTACT:
            if reach == 2:
                break
            reach = 2
            d, grow = _grow(positions, lengths, ang, tree, STEP, reach)
            if d > MIN_CONTACT:
                break
        lengths = lengths + grow
    else:
        return None
    if bin_len:
        lengths = _snap(lengths, bin_len)
        for _ in range(4):
            d, grow = _grow(positions, lengths, ang, tree, bin_len, 2)
            if d > MIN_CONTACT:
                break
            lengths = _snap(lengths + grow, bin_len)
        else:
            return None
    pos, lengths, ang = reindex(positions, lengths, ang)
    cell = gemmi.UnitCell(*lengths, *ang)
    return Placement(cell, centre(pos, masses, cell), d)
