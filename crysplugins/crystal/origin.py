"""Origin and hand search for P1 phase sets: how to compare an origin-arbitrary solution.

In P1 any origin is allowed and a structure and its inverse have the same amplitudes, so an ab initio
solution (charge flipping) may be the true structure shifted by any vector t and/or inverted.  For a
phase set φ and a reference φ_ref (degrees), the aligned phases are

    φ'(h) = s·φ(h) + 360·h·t        (s = +1, or −1 for the other hand; t fractional)

(the map inverted through the origin when s = −1, then shifted by t).  The shift maximises

    M(t) = Σ_h w(h) cos(φ_ref(h) − s·φ(h) − 2π h·t),   w = |F|²,

which is one FFT of the coefficients w·exp(i(φ_ref − s·φ)) (a phase-difference map).  The grid peak
is refined below the grid spacing with Newton steps on the exact sum.  Written by hand (numpy): gemmi
has no origin search.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from crysplugins.crystal.fourier import FourierGrid, good_fft_size, phase_shift
from crysplugins.crystal.maps import invert_grid
from crysplugins.crystal.metrics import phase_error


@dataclass
class OriginHandResult:
    """Best alignment of a phase set to a reference.

    ``shift`` fractional (u, v, w); ``inverted`` True when the other hand fits better; ``phase_error`` the
    amplitude-weighted mean phase error (degrees) after alignment; ``phases`` the aligned phases (degrees);
    ``score`` the normalised correlation M(t)/Σw (1 = identical).
    """

    shift: np.ndarray
    inverted: bool
    phase_error: float
    phases: np.ndarray
    score: float


def _search_one_hand(hkl: np.ndarray, w: np.ndarray, dphi: np.ndarray, oversample: float) -> tuple[np.ndarray, float]:
    """Maximise Σ w cos(dphi − 2π h·t) over t: FFT grid search + Newton refinement.  dphi in radians."""
    hmax = np.abs(hkl).max(axis=0)
    shape = tuple(good_fft_size(int(np.ceil(oversample * (2 * m + 1)))) for m in hmax)
    fg = FourierGrid(hkl=hkl, shape=shape, volume=1.0)
    # to_map gives Σ_h C(h) e^{-2πi h·t} over h and −h = 2·Re Σ_unique C e^{-2πi h·t}
    m = fg.to_map(w * np.exp(1j * dphi))
    idx = np.unravel_index(int(np.argmax(m)), m.shape)
    t = np.array(idx, dtype=np.float64) / np.array(shape)
    h = hkl.astype(np.float64)
    twopi_h = 2.0 * np.pi * h
    for _ in range(8):
        arg = dphi - twopi_h @ t
        g = (w * np.sin(arg)) @ twopi_h            # dM/dt
        hess = -(twopi_h.T * (w * np.cos(arg))) @ twopi_h
        try:
            step = np.linalg.solve(hess, -g)
        except np.linalg.LinAlgError:
            break
        if not np.all(np.isfinite(step)) or np.abs(step).max() > 1.0 / np.array(shape).min():
            break  # not near a maximum any more: keep the grid/last point
        t = t + step
        if np.abs(step).max() < 1e-7:
            break
    score = float((w * np.cos(dphi - twopi_h @ t)).sum() / w.sum())
    return np.mod(t, 1.0), score


def search_origin_hand(hkl: np.ndarray, f: np.ndarray, phi_ref: np.ndarray, phi: np.ndarray,
                       allow_hand: bool = True, oversample: float = 2.0) -> OriginHandResult:
    """Best origin shift (and hand) of ``phi`` against ``phi_ref`` (degrees) for P1 reflections ``hkl``.

    ``f`` are the amplitudes (|F|, the reflections' weights: w = f² in the search, f in the reported
    phase error).  NaN phases are ignored.
    """
    hkl = np.asarray(hkl, dtype=np.int64).reshape(-1, 3)
    f = np.asarray(f, dtype=np.float64)
    ref = np.asarray(phi_ref, dtype=np.float64)
    ph = np.asarray(phi, dtype=np.float64)
    ok = np.isfinite(f) & np.isfinite(ref) & np.isfinite(ph) & (f > 0)
    if ok.sum() < 3:
        raise ValueError("too few reflections with phases to search the origin")
    w = f[ok] ** 2
    best: OriginHandResult | None = None
    for sign in ((1.0, -1.0) if allow_hand else (1.0,)):
        dphi = np.deg2rad(ref[ok] - sign * ph[ok])
        t, score = _search_one_hand(hkl[ok], w, dphi, oversample)
        aligned = sign * ph + np.rad2deg(phase_shift(hkl, t))
        aligned = (aligned + 180.0) % 360.0 - 180.0
        err = phase_error(None, ref, aligned, f)
        cand = OriginHandResult(shift=t, inverted=sign < 0, phase_error=err, phases=aligned, score=score)
        if best is None or cand.phase_error < best.phase_error:
            best = cand
    assert best is not None
    return best


def apply_origin_hand(rho: np.ndarray, shift: np.ndarray, inverted: bool) -> np.ndarray:
    """Apply the alignment found by :func:`search_origin_hand` to a whole-cell map array [u, v, w].

    Returns ρ'(x) with F'(h) = F(h)·exp(2πi h·t) (conj(F(h))·exp(2πi h·t) when ``inverted``): the map inverted
    through the origin (if ``inverted``), then shifted by t (fractional) by Fourier interpolation (sub-voxel
    shifts are exact for band-limited maps).
    """
    arr = np.asarray(rho, dtype=np.float64)
    if inverted:
        arr = invert_grid(arr)  # ρ(−x) on the grid
    x = np.fft.rfftn(arr)
    n = arr.shape
    ku = np.fft.fftfreq(n[0]) * n[0]
    kv = np.fft.fftfreq(n[1]) * n[1]
    kw = np.fft.rfftfreq(n[2]) * n[2]
    t = np.asarray(shift, dtype=np.float64)
    ramp = np.exp(-2j * np.pi * (ku[:, None, None] * t[0] + kv[None, :, None] * t[1] + kw[None, None, :] * t[2]))
    # rfftn coefficient X[h] = (N/V)·conj(F(h)), so F·e^{2πi h·t} means X·e^{−2πi h·t}
    return np.fft.irfftn(x * ramp, s=n, axes=(0, 1, 2))
