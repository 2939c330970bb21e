"""Protein-region density modification: truncation of the density histogram's tails.

An error-free protein map at 1.5–3 Å has few deep negative values; noise from phase errors puts many
voxels there.  Raising the lowest ``fraction_min`` of protein-region voxels to the value at that
quantile (and, optionally, lowering the highest ``fraction_max``) is the simplest histogram-shaping
step (Zhang & Main 1990, Acta Cryst. A46, 41–46, do the full histogram match, :mod:`.histogram`;
cctbx's DM truncates at 35 %, our default is 45 %, see :class:`.settings.ProteinSettings`).
"""
from __future__ import annotations

import numpy as np

from crysplugins.crystal.dm.settings import ProteinSettings


def truncate_protein(rho: np.ndarray, protein: np.ndarray, settings: ProteinSettings) -> tuple[np.ndarray, float]:
    """Truncate the protein region of ``rho`` (bool mask ``protein``) in place; returns (rho, fraction
    of protein voxels changed)."""
    if not protein.any():
        return rho, 0.0
    vals = rho[protein]
    changed = np.zeros(vals.shape, dtype=bool)
    if settings.fraction_min is not None and settings.fraction_min > 0:
        lo = float(np.quantile(vals, settings.fraction_min))
        changed |= vals < lo
        vals = np.maximum(vals, lo)
    if settings.fraction_max is not None and settings.fraction_max > 0:
        hi = float(np.quantile(vals, 1.0 - settings.fraction_max))
        changed |= vals > hi
        vals = np.minimum(vals, hi)
    rho[protein] = vals
    return rho, float(changed.mean())
