"""Ab initio phasing of P1 fragment crystals by charge flipping + density modification (issue #9).

Charge flipping (Oszlányi & Sütő, Acta Cryst. A60, 134 (2004); A61, 147 (2005)) on normalised
amplitudes |E| (E² = |F|²/<|F|²> in resolution shells, ε = 1 in P1):

1. ρ = synthesis of |E_obs|·exp(iφ) (F000 free: it takes whatever the flipped map gives);
2. flip: ρ' = ρ where ρ ≥ δ, −ρ elsewhere, with δ = ``delta``·σ(ρ);
3. G = FFT(ρ'); strong reflections take |E_obs|·exp(iφ_G); the weakest ``weak_fraction`` (by |E|) keep
   |G| with their phase shifted by π/2 (the 2005 variant); unmeasured reflections stay zero.

Each start begins from random phases (seeded); starts are ranked by an amplitude-only figure of merit,
R = Σ| |E_obs| − k|G| | / Σ|E_obs| over the strong reflections (never the true phases).  The best
``refine_top`` starts are then density-modified against |F_obs| with an envelope sized from the
sequence (:func:`crysplugins.crystal.refine.density_modify`, the same refiner as the recycling path),
and the final choice is the highest density-modification score (again amplitudes only).

The solution's origin and hand are arbitrary (P1): compare with
:func:`crysplugins.crystal.origin.search_origin_hand`.  numpy + gemmi only.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import gemmi
import numpy as np

from crysplugins.crystal.fourier import FourierGrid, fourier_grid, stol2
from crysplugins.crystal.refine import RefineResult, density_modify
from crysplugins.interface import Sequence


def normalise_amplitudes(cell: gemmi.UnitCell, hkl: np.ndarray, f: np.ndarray, n_shells: int = 10) -> np.ndarray:
    """|E| = |F| / sqrt(<|F|²>) in ``n_shells`` equal-count shells of sin²θ/λ² (P1, ε = 1), interpolated."""
    s2 = stol2(cell, hkl)
    order = np.argsort(s2)
    n_shells = int(max(1, min(n_shells, len(f) // 30)))
    edges = np.array_split(order, n_shells)
    centres = np.array([s2[e].mean() for e in edges])
    means = np.array([np.mean(f[e] ** 2) for e in edges])
    if n_shells > 1:
        mean_f2 = np.interp(s2, centres, means)
    else:
        mean_f2 = np.full_like(s2, means[0])
    return f / np.sqrt(np.maximum(mean_f2, 1e-12))


@dataclass
class FlipStart:
    """One charge-flipping start: its seed, final figure of merit R (lower is better) and phases (radians)."""

    seed: int
    r_factor: float
    phases: np.ndarray
    cycles: int
    r_history: list[float] = field(default_factory=list)


def flip_one(fg: FourierGrid, e_obs: np.ndarray, rng: np.random.Generator, cycles: int = 400,
             delta: float = 1.1, weak_fraction: float = 0.25, stop_r: float | None = None,
             check: Callable[[], None] | None = None) -> FlipStart:
    """Run one charge-flipping start from random phases; returns the phases of the lowest-R cycle."""
    n = len(e_obs)
    weak = np.zeros(n, dtype=bool)
    n_weak = int(round(weak_fraction * n))
    if n_weak:
        weak[np.argsort(e_obs)[:n_weak]] = True
    strong = ~weak
    phi = rng.uniform(-np.pi, np.pi, n)
    f = e_obs * np.exp(1j * phi)
    f000 = 0.0
    best_r, best_phi, history = np.inf, phi.copy(), []
    es = e_obs[strong]
    for cycle in range(cycles):
        rho = fg.to_map(f, f000)
        thr = delta * rho.std()
        rho = np.where(rho >= thr, rho, -rho)
        g, f000 = fg.from_map(rho)
        ag = np.abs(g)
        k = es.sum() / max(ag[strong].sum(), 1e-12)
        r = float(np.abs(es - k * ag[strong]).sum() / es.sum())
        history.append(r)
        phase = np.angle(g)
        if r < best_r:
            best_r, best_phi = r, phase.copy()
        f = np.where(strong, e_obs * np.exp(1j * phase), ag * k * np.exp(1j * (phase + np.pi / 2)))
        if stop_r is not None and r < stop_r and cycle > 20:
            break
        if check is not None and cycle % 50 == 0:
            check()
    return FlipStart(seed=-1, r_factor=best_r, phases=best_phi, cycles=len(history), r_history=history)


@dataclass
class ChargeFlipResult:
    """Result of :func:`solve`: the density-modified best solution and what led to it.

    ``refined`` is the :class:`RefineResult` (map, phases in degrees, score); ``starts`` the figure of merit
    of every start (seed, R, cycles); ``chosen`` the seed of the start kept; ``origin_arbitrary`` always True.
    """

    refined: RefineResult
    starts: list[dict[str, Any]]
    chosen: int
    seconds: float
    origin_arbitrary: bool = True


def solve(cell: gemmi.UnitCell, hkl: np.ndarray, f_obs: np.ndarray, sequence: Sequence | str | None = None,
          solvent_fraction: float | None = None, n_starts: int = 8, flip_cycles: int = 300,
          dm_cycles: int = 200, screen_cycles: int = 40, delta: float | tuple[float, ...] = (1.1, 1.0, 1.2),
          weak_fraction: float = 0.25, stop_score: float = 0.999, seed: int = 0, rate: float = 3.0,
          progress: Callable[[float, str], None] | None = None,
          check: Callable[[], None] | None = None) -> ChargeFlipResult:
    """Charge flipping from up to ``n_starts`` random starts, each screened by a short density modification.

    ``hkl`` (n, 3) unique P1 reflections with amplitudes ``f_obs``.  Every start gets ``flip_cycles`` of
    charge flipping (δ cycling through ``delta``, in units of σ(ρ)) and ``screen_cycles`` of density
    modification; the start with the best density-modification score (CC of |F_mod| with |F_obs|, amplitudes
    only) is refined for the remaining ``dm_cycles``.  Starts stop early once one screens at or above
    ``stop_score``.  The envelope is sized from ``sequence`` (or ``solvent_fraction``); one is required.
    """
    t0 = time.monotonic()
    hkl = np.asarray(hkl, dtype=np.int64).reshape(-1, 3)
    f_obs = np.asarray(f_obs, dtype=np.float64)
    d_min = float(1.0 / np.sqrt(4.0 * stol2(cell, hkl).max()))
    fg = fourier_grid(cell, hkl, d_min=d_min, rate=rate)
    e_obs = normalise_amplitudes(cell, hkl, f_obs)
    deltas = (delta,) if isinstance(delta, (int, float)) else tuple(delta)
    table: list[dict[str, Any]] = []
    best: tuple[RefineResult, int] | None = None
    for i in range(n_starts):
        rng = np.random.default_rng([seed, i])
        d = float(deltas[i % len(deltas)])
        st = flip_one(fg, e_obs, rng, cycles=flip_cycles, delta=d, weak_fraction=weak_fraction, check=check)
        screen = density_modify(None, (cell, hkl, f_obs), phases=np.degrees(st.phases), sequence=sequence,
                                solvent_fraction=solvent_fraction, cycles=screen_cycles, rate=rate)
        table.append({"start": i, "delta": d, "r_factor": round(st.r_factor, 4), "flip_cycles": st.cycles,
                      "screen_score": round(screen.score, 5)})
        if best is None or screen.score > best[0].score:
            best = (screen, i)
        if progress is not None:
            progress(0.8 * (i + 1) / n_starts,
                     f"start {i + 1}/{n_starts}: R {st.r_factor:.3f}, DM CC {screen.score:.4f}")
        if screen.score >= stop_score:
            break
    assert best is not None
    screen, chosen = best
    remaining = max(dm_cycles - screen_cycles, 1)
    final = density_modify(None, (cell, hkl, f_obs), phases=screen.phases, sequence=sequence,
                           solvent_fraction=solvent_fraction, cycles=remaining, rate=rate)
    final.history = screen.history + [dict(h, cycle=h["cycle"] + screen_cycles) for h in final.history]
    if progress is not None:
        progress(1.0, f"density modification done: CC {final.score:.4f}")
    return ChargeFlipResult(refined=final, starts=table, chosen=chosen, seconds=time.monotonic() - t0)
