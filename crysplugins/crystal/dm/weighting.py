"""σ_A weighting of the modified map against |F_obs| (Read 1986, Acta Cryst. A42, 140–149).

After modification, the map's structure factors F_mod are a "calculated" model of the crystal.  In each
resolution shell they are scaled to |F_obs| (⟨|F_obs|²/ε⟩ = ⟨|F_mod|²/ε⟩), normalised to E-values, and
the shell's σ_A is the maximum-likelihood value of the Rice (acentric) or Gaussian (centric)
distribution of |E_obs| given |E_mod| (a grid search on σ_A ∈ [0.01, 0.99]; when a free set is given,
on the free reflections only, which no cycle's map contained).  The phase information of the modified
map is then the unimodal HL term X·(cos φ_mod, sin φ_mod) with X = 2σ_A|E_o||E_c|/(1 − σ_A²)
(acentric) or σ_A|E_o||E_c|/(1 − σ_A²) (centric), which is added to the experimental HL coefficients.
Map coefficients are 2m|F_obs| − D|F_mod| (acentric; D = σ_A on the scaled F_mod) or m|F_obs|
(centric) on the combined phase, or plain m|F_obs|.
"""
from __future__ import annotations

import numpy as np

def _bin_mean(values: np.ndarray, bins: np.ndarray, select: np.ndarray | None = None) -> np.ndarray:
    nb = int(bins.max()) + 1
    w = np.ones(len(values)) if select is None else select.astype(np.float64)
    num = np.bincount(bins, weights=values * w, minlength=nb)
    den = np.bincount(bins, weights=w, minlength=nb)
    return num / np.maximum(den, 1e-300)


def normalise(f: np.ndarray, epsilon: np.ndarray, bins: np.ndarray, select: np.ndarray | None = None) -> np.ndarray:
    """|E| with ⟨|E|²⟩ = 1 per shell (⟨|F|²/ε⟩ over ``select``)."""
    f2 = np.abs(f) ** 2 / epsilon
    mean = _bin_mean(f2, bins, select)[bins]
    return np.sqrt(f2 / np.maximum(mean, 1e-300))


_X = np.linspace(0.0, 40.0, 4001)
_LOG_I0 = np.log(np.i0(_X))


def _log_i0(x: np.ndarray) -> np.ndarray:
    """log I0(x): a table below 40, the asymptotic series above."""
    big = x > 40.0
    out = np.interp(x, _X, _LOG_I0)
    if big.any():
        xl = x[big]
        out[big] = xl - 0.5 * np.log(2 * np.pi * xl) + np.log1p(1.0 / (8.0 * xl))
    return out


def sigmaa_ml(eo: np.ndarray, ec: np.ndarray, centric: np.ndarray, bins: np.ndarray,
              select: np.ndarray | None = None) -> np.ndarray:
    """Maximum-likelihood σ_A per shell (array over shells) from |E_obs|, |E_mod| (module docstring):
    a coarse grid (steps of 0.05) then a fine one (0.01) around each shell's best value."""
    nb = int(bins.max()) + 1
    sel = np.ones(len(eo), dtype=bool) if select is None else select
    e_o, e_c, c, b = eo[sel], ec[sel], centric[sel], bins[sel]
    best = np.full(nb, 0.5)
    for grid in (np.linspace(0.02, 0.97, 20), np.linspace(-0.04, 0.04, 9)):
        best_ll = np.full(nb, -np.inf)
        new = best.copy()
        for step in grid:
            s_bin = np.clip(best + step, 0.01, 0.99) if grid[0] < 0 else np.full(nb, step)
            ll = np.bincount(b, weights=_log_likelihood_bins(s_bin[b], e_o, e_c, c), minlength=nb)
            better = ll > best_ll
            best_ll = np.where(better, ll, best_ll)
            new = np.where(better, s_bin, new)
        best = new
    return best


def _log_likelihood_bins(s: np.ndarray, e_o: np.ndarray, e_c: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Per-reflection log-likelihood at per-reflection σ_A ``s`` (Rice acentric, Gaussian centric)."""
    v = 1.0 - s * s
    x = s * e_o * e_c / v
    ll_a = np.log(2 * e_o / v + 1e-300) - (e_o ** 2 + (s * e_c) ** 2) / v + _log_i0(2 * x)
    ll_c = -0.5 * np.log(v) - (e_o ** 2 + (s * e_c) ** 2) / (2 * v) + np.logaddexp(x, -x)
    return np.where(c, ll_c, ll_a)


def scale_to_obs(fobs: np.ndarray, fmod: np.ndarray, epsilon: np.ndarray, bins: np.ndarray,
                 select: np.ndarray | None = None) -> np.ndarray:
    """F_mod scaled per shell so that ⟨|F_mod|²/ε⟩ = ⟨|F_obs|²/ε⟩ (over ``select``)."""
    o = _bin_mean(fobs ** 2 / epsilon, bins, select)
    c = _bin_mean(np.abs(fmod) ** 2 / epsilon, bins, select)
    return fmod * np.sqrt(o / np.maximum(c, 1e-300))[bins]


def modified_phase_hl(eo: np.ndarray, ec: np.ndarray, fmod: np.ndarray, centric: np.ndarray,
                      sigmaa: np.ndarray) -> np.ndarray:
    """(n, 4) HL coefficients (X cos φ_mod, X sin φ_mod, 0, 0) of the modified map's phases from |E_obs|,
    |E_mod|, F_mod and σ_A per reflection."""
    x = sigmaa * eo * ec / (1.0 - sigmaa * sigmaa)
    x = np.where(centric, x, 2.0 * x)
    phi = np.angle(fmod)
    out = np.zeros((len(eo), 4))
    out[:, 0] = x * np.cos(phi)
    out[:, 1] = x * np.sin(phi)
    return out


def map_coefficients(fobs: np.ndarray, phib: np.ndarray, fom: np.ndarray, fmod_scaled: np.ndarray | None,
                     d_weight: np.ndarray | None, centric: np.ndarray, kind: str) -> np.ndarray:
    """Complex map coefficients on the best phases ``phib`` (radians): ``"mFo"`` or ``"2mFo-DFc"``."""
    mfo = fom * fobs * np.exp(1j * phib)
    if kind == "mFo" or fmod_scaled is None:
        return mfo
    if kind != "2mFo-DFc":
        raise ValueError(f"unknown map coefficients {kind!r}")
    dfc = d_weight * np.abs(fmod_scaled) * np.exp(1j * phib)
    return np.where(centric, mfo, 2.0 * mfo - dfc)
