"""Map and phase metrics used to evaluate predictors (paper section 5; CCP4 cphasematch conventions).

* :func:`pearson` — eq. 7 of the paper: Pearson correlation over every voxel of two maps on the same grid.
* :func:`fft_amplitude_pearson` — the same on the amplitudes |FFT| of both maps (the second Pearson term
  of the paper's loss, eq. 8).
* :func:`phase_error` — mean absolute phase difference in degrees (0–180), amplitude-weighted like
  cphasematch's weighted mean phase error (weights = |F|, usually the observed/true amplitudes).
* :func:`phase_error_shells` — the same in equal-count resolution shells (12 by default, like cphasematch).

Origin-arbitrary predictors (P1 ab initio phasing) are aligned to a reference first with
:func:`crysplugins.crystal.origin.search_origin_hand`.

Phases are in degrees, resolutions in Å.  numpy only (no torch).
"""
from __future__ import annotations

from typing import Any

import gemmi
import numpy as np

from crysplugins.crystal.fourier import cell_d


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation coefficient of two maps over all voxels (paper eq. 7); NaN if one is constant."""
    x = np.asarray(a, dtype=np.float64).ravel()
    y = np.asarray(b, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"maps differ in size ({x.size} vs {y.size} voxels)")
    x = x - x.mean()
    y = y - y.mean()
    den = np.sqrt((x * x).sum() * (y * y).sum())
    return float((x * y).sum() / den) if den > 0 else float("nan")


def fft_amplitude_pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of |FFT(a)| and |FFT(b)| over all Fourier coefficients (paper eq. 8, 2nd term)."""
    return pearson(np.abs(np.fft.fftn(np.asarray(a, dtype=np.float64))),
                   np.abs(np.fft.fftn(np.asarray(b, dtype=np.float64))))


def phase_difference(phi_a: np.ndarray, phi_b: np.ndarray) -> np.ndarray:
    """|φa − φb| wrapped to [0, 180] degrees."""
    d = np.abs((np.asarray(phi_a, dtype=np.float64) - np.asarray(phi_b, dtype=np.float64) + 180.0) % 360.0 - 180.0)
    return d


def phase_error(hkl: np.ndarray | None, phi_a: np.ndarray, phi_b: np.ndarray,
                weights: np.ndarray | None = None) -> float:
    """Mean phase error in degrees between two phase sets of the same reflections.

    ``weights`` (usually |F|) gives the amplitude-weighted mean, like cphasematch's weighted figure;
    without weights the plain mean.  Reflections where either phase is NaN are skipped.  ``hkl`` is only
    used to check lengths (kept for a uniform signature with the shell version).
    """
    a = np.asarray(phi_a, dtype=np.float64)
    b = np.asarray(phi_b, dtype=np.float64)
    if a.shape != b.shape or (hkl is not None and len(hkl) != len(a)):
        raise ValueError("phase arrays and hkl differ in length")
    w = np.ones_like(a) if weights is None else np.asarray(weights, dtype=np.float64)
    ok = np.isfinite(a) & np.isfinite(b) & np.isfinite(w)
    if not ok.any() or w[ok].sum() <= 0:
        return float("nan")
    return float(np.average(phase_difference(a[ok], b[ok]), weights=w[ok]))


def equal_count_shells(d: np.ndarray, n_shells: int = 12) -> np.ndarray:
    """Shell index (0 = lowest resolution) of each reflection for ``n_shells`` shells of equal count in 1/d³."""
    order = np.argsort(-np.asarray(d))  # low resolution (large d) first
    shell = np.empty(len(d), dtype=np.int64)
    shell[order] = np.minimum((np.arange(len(d)) * n_shells) // max(len(d), 1), n_shells - 1)
    return shell


def phase_error_shells(hkl: np.ndarray, cell: gemmi.UnitCell, phi_true: np.ndarray, phi_pred: np.ndarray,
                       f: np.ndarray | None = None, n_shells: int = 12) -> list[dict[str, Any]]:
    """Amplitude-weighted mean phase error (degrees) in ``n_shells`` equal-count resolution shells.

    Returns one dict per shell, low resolution first: ``d_max``, ``d_min`` (Å), ``n`` reflections,
    ``phase_error`` (degrees, weighted by ``f`` when given).
    """
    hkl = np.asarray(hkl).reshape(-1, 3)
    d = cell_d(cell, hkl)
    shell = equal_count_shells(d, n_shells)
    out = []
    for s in range(n_shells):
        sel = shell == s
        if not sel.any():
            continue
        out.append({
            "shell": s,
            "d_max": float(d[sel].max()),
            "d_min": float(d[sel].min()),
            "n": int(sel.sum()),
            "phase_error": phase_error(None, np.asarray(phi_true)[sel], np.asarray(phi_pred)[sel],
                                       None if f is None else np.asarray(f)[sel]),
        })
    return out


def fraction_solved_by_shell(per_example_shells: list[list[dict[str, Any]]], cutoff: float = 60.0) -> list[dict[str, Any]]:
    """Fraction of examples whose shell phase error is below ``cutoff`` degrees, per shell index (paper fig. 7).

    Shells are matched by index (each example has its own equal-count shells); the reported d range is the
    median over examples.
    """
    if not per_example_shells:
        return []
    n = max(len(s) for s in per_example_shells)
    out = []
    for i in range(n):
        rows = [s[i] for s in per_example_shells if len(s) > i and np.isfinite(s[i]["phase_error"])]
        if not rows:
            continue
        out.append({
            "shell": i,
            "d_max": float(np.median([r["d_max"] for r in rows])),
            "d_min": float(np.median([r["d_min"] for r in rows])),
            "fraction_below": float(np.mean([r["phase_error"] < cutoff for r in rows])),
            "median_phase_error": float(np.median([r["phase_error"] for r in rows])),
            "n_examples": len(rows),
        })
    return out
