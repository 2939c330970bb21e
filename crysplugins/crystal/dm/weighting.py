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


_STEP = 0.01
_X = np.arange(0.0, 40.0 + _STEP / 2, _STEP)
_LOG_I0 = np.log(np.i0(_X))
_LOG_I0_SLOPE = np.diff(_LOG_I0)


def _log_i0(x: np.ndarray) -> np.ndarray:
    """log I0(x) for x ≥ 0: linear interpolation in a table of step 0.01 below 40 (indexed directly, not
    searched), the asymptotic series above."""
    t = np.minimum(x, 40.0) * (1.0 / _STEP)
    i = np.minimum(t.astype(np.intp), len(_LOG_I0_SLOPE) - 1)
    out = _LOG_I0[i] + (t - i) * _LOG_I0_SLOPE[i]
    big = x > 40.0
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
    likelihood = _ShellLikelihood(eo[sel], ec[sel], centric[sel], bins[sel], nb)
    best = np.full(nb, 0.5)
    for grid in (np.linspace(0.02, 0.97, 20), np.linspace(-0.04, 0.04, 9)):
        best_ll = np.full(nb, -np.inf)
        new = best.copy()
        for step in grid:
            s_bin = np.clip(best + step, 0.01, 0.99) if grid[0] < 0 else np.full(nb, step)
            ll = likelihood(s_bin)
            better = ll > best_ll
            best_ll = np.where(better, ll, best_ll)
            new = np.where(better, s_bin, new)
        best = new
    return best


class _ShellLikelihood:
    """Log-likelihood of |E_obs| given |E_mod| summed per shell at that shell's σ_A: Rice for acentric,
    Gaussian for centric reflections.  The terms that do not depend on σ_A are formed once, as the grid search
    calls this 29 times per cycle (it was half the engine's time when every call formed them anew)."""

    def __init__(self, e_o: np.ndarray, e_c: np.ndarray, centric: np.ndarray, bins: np.ndarray, nb: int) -> None:
        self.nb = nb
        self.groups = []
        for is_centric in (False, True):
            k = centric == is_centric
            if k.any():
                eo, ec = e_o[k], e_c[k]
                const = np.zeros(len(eo)) if is_centric else np.log(2 * eo + 1e-300)
                self.groups.append((is_centric, bins[k], eo * eo, ec * ec, eo * ec, const))

    def __call__(self, s_bin: np.ndarray) -> np.ndarray:
        """Log-likelihood of each shell at its σ_A ``s_bin`` (one value per shell)."""
        out = np.zeros(self.nb)
        for is_centric, b, *arrays in self.groups:
            out += np.bincount(b, weights=self._terms(s_bin[b], is_centric, *arrays), minlength=self.nb)
        return out

    @staticmethod
    def _terms(s: np.ndarray, is_centric: bool, eo2: np.ndarray, ec2: np.ndarray, eoec: np.ndarray,
               const: np.ndarray) -> np.ndarray:
        """Per-reflection log-likelihood at per-reflection σ_A ``s`` (module docstring)."""
        v = 1.0 - s * s
        x = s * eoec / v
        if is_centric:
            return -0.5 * np.log(v) - (eo2 + s * s * ec2) / (2 * v) + np.logaddexp(x, -x)
        return const - np.log(v) - (eo2 + s * s * ec2) / v + _log_i0(2 * x)


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
