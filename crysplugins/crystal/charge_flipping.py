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
from crysplugins.errors import CrysError
from crysplugins.interface import Sequence

#: Size limits of one run.  The largest fragment cells phased here (15 residues at 1.5 Å, up to ~26,000 Å³)
#: need a 324,000-point grid and ~16,000 P1 reflections; a protein cell expanded to P1 (~150,000 Å³ at
#: 1.8 Å: 864,000 points, 55,000 reflections) would run thousands of FFTs of that size per start for minutes
#: to hours and still not phase, so it is refused before any cycle.
MAX_GRID_POINTS = 2 ** 19
MAX_REFLECTIONS = 40000


def check_size(cell: gemmi.UnitCell, n_reflections: int, grid: tuple[int, int, int]) -> None:
    """Refuse, in one sentence, data too large for charge flipping (``MAX_GRID_POINTS``, ``MAX_REFLECTIONS``)."""
    points = int(np.prod(grid))
    if points <= MAX_GRID_POINTS and n_reflections <= MAX_REFLECTIONS:
        return
    raise CrysError(f"This cell ({cell.volume:,.0f} Å³, {n_reflections:,} P1 reflections, a "
                    f"{'×'.join(str(n) for n in grid)} grid) is too large for charge flipping, which is meant for "
                    f"small P1 fragment cells (at most {MAX_REFLECTIONS:,} reflections and {MAX_GRID_POINTS:,} grid "
                    f"points); phase a protein crystal by molecular replacement or experimental phasing instead.")


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
             check: Callable[[], None] | None = None,
             monitor: Callable[[np.ndarray], bool] | None = None, monitor_every: int = 200,
             start_phases: np.ndarray | None = None) -> FlipStart:
    """Run one charge-flipping start from random phases (or ``start_phases``, radians); returns the phases
    of the lowest-R cycle.

    ``monitor(phases)`` (radians), when given, is called every ``monitor_every`` cycles and at the end; it
    returns True to stop the start early (used by :func:`solve` to catch convergence with a short
    density-modification screen, since R alone hardly changes when a P1 structure converges).
    """
    n = len(e_obs)
    weak = np.zeros(n, dtype=bool)
    n_weak = int(round(weak_fraction * n))
    if n_weak:
        weak[np.argsort(e_obs)[:n_weak]] = True
    strong = ~weak
    phi = rng.uniform(-np.pi, np.pi, n) if start_phases is None else np.asarray(start_phases, dtype=np.float64)
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
        if monitor is not None and (cycle + 1) % monitor_every == 0 and monitor(phase):
            break
    else:
        if monitor is not None and cycles % monitor_every != 0:
            monitor(phase)
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


def _flip_start(fg: FourierGrid, e_obs: np.ndarray, rng: np.random.Generator,
                dm: Callable[[np.ndarray, int], RefineResult], i: int, n_starts: int, flip_cycles: int,
                delta: float, weak_fraction: float, screen_cycles: int, screen_every: int, screen_pass: float,
                progress: Callable[[float, str], None] | None,
                check: Callable[[], None] | None) -> tuple[FlipStart, dict[str, Any]]:
    """One random start of :func:`solve`: charge flipping screened every ``screen_every`` cycles by a short
    density modification; returns (the start, its best screened candidate {"score", "phases"})."""
    cand: dict[str, Any] = {"score": -np.inf, "phases": None}
    done = {"calls": 0}

    def tick() -> None:
        """Called every 50 flip cycles: stop a cancelled run and say how far this start is."""
        cycles_done = 50 * done["calls"]
        done["calls"] += 1
        if check is not None:
            check()
        if progress is not None:
            progress(0.8 * (i + min(cycles_done, flip_cycles) / flip_cycles) / n_starts,
                     f"start {i + 1}/{n_starts}: charge-flipping cycle {cycles_done}")

    def monitor(phases: np.ndarray) -> bool:
        screen = dm(np.degrees(phases), screen_cycles)
        if screen.score > cand["score"]:
            cand.update(score=screen.score, phases=screen.phases)
        return screen.score >= screen_pass

    st = flip_one(fg, e_obs, rng, cycles=flip_cycles, delta=delta, weak_fraction=weak_fraction,
                  check=tick, monitor=monitor, monitor_every=screen_every)
    return st, cand


def solve(cell: gemmi.UnitCell, hkl: np.ndarray, f_obs: np.ndarray, sequence: Sequence | str | None = None,
          solvent_fraction: float | None = None, n_starts: int = 8, flip_cycles: int = 1000,
          dm_cycles: int = 200, screen_cycles: int = 15, screen_every: int = 200, delta: float = 1.1,
          weak_fraction: float = 0.25, screen_pass: float = 0.99, stop_score: float = 0.999,
          refine_top: int = 3, seed: int = 0, rate: float = 3.0,
          progress: Callable[[float, str], None] | None = None,
          check: Callable[[], None] | None = None) -> ChargeFlipResult:
    """Charge flipping from up to ``n_starts`` random starts, ranked with amplitudes only.

    ``hkl`` (n, 3) unique P1 reflections with amplitudes ``f_obs``.  Every start runs up to ``flip_cycles``
    of charge flipping (threshold ``delta``·σ(ρ)); every ``screen_every`` cycles its current phases get a
    short density modification (``screen_cycles``) whose score — the CC of |F_mod| with |F_obs| — keeps the
    start's best candidate.  A candidate screening at ``screen_pass`` or better is density-modified for
    ``dm_cycles`` at once, and when that full score reaches ``stop_score`` the search ends.  Otherwise the
    ``refine_top`` best candidates are fully density-modified and the highest full score wins.  (In these
    high-solvent cells wrong solutions also flatten well, so only the full score separates them: measured
    0.9994–0.9999 for solved dipeptides at 1.5 Å against ≤ 0.9982 for wrong ones.)  The envelope is sized
    from ``sequence`` (or ``solvent_fraction``); one of them is required.
    """
    t0 = time.monotonic()
    hkl = np.asarray(hkl, dtype=np.int64).reshape(-1, 3)
    f_obs = np.asarray(f_obs, dtype=np.float64)
    d_min = float(1.0 / np.sqrt(4.0 * stol2(cell, hkl).max()))
    fg = fourier_grid(cell, hkl, d_min=d_min, rate=rate)
    check_size(cell, len(hkl), fg.shape)
    e_obs = normalise_amplitudes(cell, hkl, f_obs)
    obs = (cell, hkl, f_obs)

    def dm(phases_deg: np.ndarray, cycles: int) -> RefineResult:
        return density_modify(None, obs, phases=phases_deg, sequence=sequence,
                              solvent_fraction=solvent_fraction, cycles=cycles, rate=rate)

    table: list[dict[str, Any]] = []
    candidates: list[tuple[float, int, np.ndarray]] = []  # (screen score, start, phases in degrees)
    best: tuple[RefineResult, int] | None = None
    for i in range(n_starts):
        st, cand = _flip_start(fg, e_obs, np.random.default_rng([seed, i]), dm, i, n_starts, flip_cycles, delta,
                               weak_fraction, screen_cycles, screen_every, screen_pass, progress, check)
        row = {"start": i, "delta": delta, "r_factor": round(st.r_factor, 4), "flip_cycles": st.cycles,
               "screen_score": round(float(cand["score"]), 5), "dm_score": None}
        table.append(row)
        if cand["score"] >= screen_pass:
            full = dm(cand["phases"], dm_cycles)
            row["dm_score"] = round(full.score, 5)
            if best is None or full.score > best[0].score:
                best = (full, i)
        else:
            candidates.append((float(cand["score"]), i, cand["phases"]))
        if progress is not None:
            full_cc = (f"full CC {row['dm_score']:.4f}" if row["dm_score"] is not None
                       else f"screen below {screen_pass}, no full density modification")
            progress(0.8 * (i + 1) / n_starts, f"start {i + 1}/{n_starts}: {st.cycles} cycles, "
                     f"screen CC {cand['score']:.4f}, {full_cc}")
        if best is not None and best[0].score >= stop_score:
            break
    if best is None or best[0].score < stop_score:
        n_more = max(refine_top - sum(1 for r in table if r["dm_score"] is not None), 0)
        for score, i, phases in sorted(candidates, key=lambda c: -c[0])[:n_more]:
            full = dm(phases, dm_cycles)
            table[i]["dm_score"] = round(full.score, 5)
            if best is None or full.score > best[0].score:
                best = (full, i)
    assert best is not None
    if progress is not None:
        progress(1.0, f"density modification done: CC {best[0].score:.4f}")
    return ChargeFlipResult(refined=best[0], starts=table, chosen=best[1], seconds=time.monotonic() - t0)
