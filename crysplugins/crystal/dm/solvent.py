"""Solvent modification: flipping with the γ correction (Abrahams & Leslie 1996, Acta Cryst. D52, 30–42)
and the solvent-level adjustment.

Flattening sets the solvent region to its mean ρ_s; the map it gives keeps a fraction γ ≈ 1 − S of the
input map's own (erroneous) density, so its phases lean back towards the input ones.  Flipping,
ρ' = ρ_s + k(ρ − ρ_s) with k = −(1 − S)/S, removes that self-contribution on average (Abrahams & Leslie
section 2.3).  When the protein density has been truncated first, the protein part of the map shrank,
and k is scaled by (rms_protein_after / rms_protein_before)² to match.  Maps have no F000, so the mean
solvent level sits below the true one; the adjustment lifts the solvent so that the protein/solvent
mean ratio matches ``protein_solvent_ratio`` relative to the lowest protein density (as in cctbx's DM).
"""
from __future__ import annotations

import numpy as np

from crysplugins.crystal.dm.settings import SolventSettings


def flip_factor(solvent_fraction: float, settings: SolventSettings, rms_ratio: float = 1.0) -> float:
    """k of ρ_s + k(ρ − ρ_s): −γ(1 − S)/S, times ``rms_ratio``² when ``scale_flip``."""
    s = float(np.clip(solvent_fraction, 0.05, 0.95))
    k = -settings.gamma * (1.0 - s) / s
    return k * (rms_ratio ** 2 if settings.scale_flip else 1.0)


def modify_solvent(rho: np.ndarray, solvent: np.ndarray, solvent_fraction: float, settings: SolventSettings,
                   rms_ratio: float = 1.0, last: bool = False) -> tuple[np.ndarray, float]:
    """Flip (or flatten) the solvent region of ``rho`` (bool mask ``solvent``) in place; returns
    (rho, k used).  In the last cycle with ``flatten_last`` the solvent is flattened (k = 0) when the
    flip would have |k| >= ``flatten_last_min_k``."""
    level = float(rho[solvent].mean()) if solvent.any() else 0.0
    if settings.method not in ("flip", "flatten"):
        raise ValueError(f"unknown solvent method {settings.method!r}")
    k = flip_factor(solvent_fraction, settings, rms_ratio) if settings.method == "flip" else 0.0
    if last and settings.flatten_last and abs(k) >= settings.flatten_last_min_k:
        k = 0.0
    rho[solvent] = level + k * (rho[solvent] - level)
    return rho, k


def adjust_solvent_level(rho: np.ndarray, solvent: np.ndarray, settings: SolventSettings) -> float:
    """Raise the solvent region so that (mean protein − min protein)/ratio + min protein is its mean;
    returns the amount added (e/Å³)."""
    if not settings.adjust_level or not solvent.any() or solvent.all():
        return 0.0
    prot = rho[~solvent]
    lo = float(prot.min())
    add = (float(prot.mean()) - lo) / settings.protein_solvent_ratio + lo - float(rho[solvent].mean())
    rho[solvent] += add
    return add
