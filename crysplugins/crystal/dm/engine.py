"""The density-modification cycle (the order of cctbx's ``mmtbx.density_modification`` and of DM/Parrot):

1. map from the current coefficients (FOM-weighted; 2mFo − DFc after the first cycle); reflections of the
   ASU to d_min that were not measured enter as σ_A·F_mod of the cycle before (``fill_unmeasured``), and in
   the final steps, at half weight, those to 0.9 d_min beyond the data (``extend_fraction``);
2. solvent mask: local rms with a radius shrinking from d_min + 4 Å to d_min, or a mask provider (the
   U-net, re-run on the current map every few cycles), or a rank mix of the two;
3. protein histogram matching (:mod:`.histogram`, off by default) and truncation (:mod:`.protein`),
   solvent flipping with γ on its schedule + level adjustment (:mod:`.solvent`);
4. structure factors of the modified map, σ_A weighting against |F_obs| (:mod:`.weighting`; σ_A scaled down
   when the experimental phases are poor, ``WeightingSettings.sigmaa_scale_poor``), phase combination with the
   experimental HL coefficients (:mod:`.hl`): HL = HL_exp + HL_mod (the experimental phases are never
   forgotten);
5. optional phase extension: reflections beyond the current resolution limit, which moves from
   ``initial_d_min`` to d_min over the shrink cycles, are left out of maps until reached.

The output (phases, FOMs, HL coefficients, map) combines HL_exp with the mean HL_mod of the last
``output_average`` share of the cycles; that mean never feeds back into a cycle.  With ``ensemble``, and by
default on grids of fewer than ``ensemble_below`` points, several runs whose first masks differ are made
and their outputs averaged (:mod:`.ensemble`).

One trace row per cycle: mean FOM, mean phase change (°, |F_obs|-weighted), solvent fraction of the
mask, agreement of the mask with the previous cycle's, the flip factor k, mean σ_A.
"""
from __future__ import annotations

import time
from dataclasses import replace
from typing import Any, Callable

import numpy as np

from crysplugins.crystal.dm.ensemble import SharedProvider, combine
from crysplugins.crystal.dm.histogram import match_histogram, reference_quantiles
from crysplugins.crystal.dm.hl import phase_fom_from_hl
from crysplugins.crystal.dm.masking import (LocalDeviation, MaskProvider, MaskRequest, resample, solvent_mask,
                                            symmetrized)
from crysplugins.crystal.dm.protein import truncate_protein
from crysplugins.crystal.dm.reflections import ReflectionSet
from crysplugins.crystal.dm.result import DMResult
from crysplugins.crystal.dm.settings import ENSEMBLE_RADII, DMSettings, ProteinSettings, SolventSettings
from crysplugins.crystal.dm.solvent import adjust_solvent_level, modify_solvent
from crysplugins.crystal.dm.weighting import (map_coefficients, modified_phase_hl, normalise, scale_to_obs,
                                              sigmaa_ml)
from crysplugins.errors import CrysError
from crysplugins.interface import CrystalMap


def _schedule(settings: DMSettings, cycle: int, start: float, end: float) -> float:
    """Linear move from ``start`` to ``end`` over the shrink steps (cctbx's radius schedule)."""
    if cycle < settings.initial_steps or settings.shrink_steps <= 0:
        return start if cycle < settings.initial_steps else end
    t = min((cycle - settings.initial_steps + 1) / settings.shrink_steps, 1.0)
    return start + (end - start) * t


def _free_set(refl: ReflectionSet, fraction: float, seed: int) -> np.ndarray:
    if fraction <= 0:
        return np.zeros(len(refl.hkl), dtype=bool)
    return np.random.default_rng(seed).random(len(refl.hkl)) < fraction


def _test_set(refl: ReflectionSet, free_fraction: float, fraction: float, seed: int) -> np.ndarray:
    """Reflections left out of every map only to judge the result, disjoint from the σ_A free set (the
    same random draw, the next ``fraction`` of it), so two runs with the same seed share it."""
    if fraction <= 0:
        return np.zeros(len(refl.hkl), dtype=bool)
    u = np.random.default_rng(seed).random(len(refl.hkl))
    lo = max(free_fraction, 0.0)
    return (u >= lo) & (u < lo + fraction)


def test_agreement(refl: ReflectionSet, fmod: np.ndarray, test: np.ndarray) -> tuple[float, float]:
    """(correlation, R) of |E_mod| with |E_obs| over the ``test`` reflections, which no map contained, so
    the modified map predicts their amplitudes without having seen them (a free-set check in the spirit
    of R_free, Brünger 1992; amplitudes only, no phases).  |E| normalised in ~100-reflection shells of
    the test set, so the shared fall-off with resolution does not count.  (nan, nan) without a test set."""
    if test.sum() < 10:
        return float("nan"), float("nan")
    coarse = refl.resolution_bins(n_bins=int(np.clip(test.sum() // 100, 1, 8)), select=test)
    eo = normalise(refl.fobs, refl.epsilon, coarse, test)[test]
    ec = normalise(fmod, refl.epsilon, coarse, test)[test]
    cc = float(np.corrcoef(eo, ec)[0, 1]) if eo.std() > 0 and ec.std() > 0 else float("nan")
    return cc, float(np.abs(eo - ec).sum() / max(eo.sum(), 1e-300))


def run_dm(refl: ReflectionSet, hl_exp: np.ndarray, settings: DMSettings, solvent_fraction: float | None = None,
           mask_provider: MaskProvider | None = None,
           progress: Callable[[float, str], None] | None = None,
           on_cycle: Callable[[int, np.ndarray, np.ndarray], None] | None = None) -> DMResult:
    """Density-modify experimental phases (HL coefficients ``hl_exp`` aligned with ``refl``): one run, or the
    average of the runs of :func:`ensemble_radii` (:mod:`.ensemble`).

    ``on_cycle(cycle, phases in radians, figures of merit)`` is called after every cycle (monitoring; of the
    first run of an ensemble)."""
    radii = ensemble_radii(settings, engine_grid(refl, settings))
    if len(radii) < 2:
        return _run_one(refl, hl_exp, settings, solvent_fraction, mask_provider, progress, on_cycle)
    shared = SharedProvider(mask_provider) if mask_provider is not None else None
    members = []
    for i, r in enumerate(radii):
        one = replace(settings, ensemble=(), ensemble_below=0, mask=replace(settings.mask, radius_extra=float(r)))
        report = None if progress is None else (
            lambda f, msg, i=i: progress((i + f) / len(radii), f"run {i + 1} of {len(radii)}: {msg}"))
        members.append(_run_one(refl, hl_exp, one, solvent_fraction, shared, report, on_cycle if i == 0 else None))
    return combine(members, np.asarray(hl_exp, dtype=np.float64))


def ensemble_radii(settings: DMSettings, grid: tuple[int, int, int]) -> tuple[float, ...]:
    """The first-mask radius extras (Å) of the runs to average: ``settings.ensemble``, or with none given
    :data:`~.settings.ENSEMBLE_RADII` when the engine's ``grid`` has fewer than ``settings.ensemble_below``
    points (where three runs take seconds)."""
    if settings.ensemble:
        return tuple(settings.ensemble)
    return ENSEMBLE_RADII if int(np.prod(grid)) < settings.ensemble_below else ()


def engine_grid(refl: ReflectionSet, settings: DMSettings) -> tuple[int, int, int]:
    """The whole-cell grid of the cycles: spacing d_min / ``grid_rate`` Å, and fine enough to hold the filled
    terms beyond the data (to d_min·(1 − ``extend_fraction``) with ``fill_unmeasured``)."""
    return refl.grid_shape(1.0, min(refl.d_min / settings.grid_rate, _fill_limit(settings, refl.d_min) / 2.05))


def _fill_limit(settings: DMSettings, d_min: float) -> float:
    """Resolution (Å) to which the unmeasured reflections are filled: d_min·(1 − ``extend_fraction``) with
    ``fill_unmeasured``, else d_min."""
    return d_min * (1.0 - settings.extend_fraction) if settings.fill_unmeasured else d_min


def _run_one(refl: ReflectionSet, hl_exp: np.ndarray, settings: DMSettings, solvent_fraction: float | None,
             mask_provider: MaskProvider | None, progress: Callable[[float, str], None] | None,
             on_cycle: Callable[[int, np.ndarray, np.ndarray], None] | None) -> DMResult:
    """One density-modification run (:func:`run_dm`)."""
    t0 = time.monotonic()
    s_frac = solvent_fraction if solvent_fraction is not None else settings.solvent_fraction
    if s_frac is None or not 0.0 < s_frac < 1.0:
        raise CrysError("Density modification needs a solvent fraction between 0 and 1.")
    hl_exp = np.asarray(hl_exp, dtype=np.float64)
    if hl_exp.shape != (len(refl.hkl), 4):
        raise CrysError("The phase probabilities do not match the reflections.")
    start_fom = float(np.average(phase_fom_from_hl(hl_exp, refl.centric, refl.centric_phase)[1], weights=refl.fobs))
    settings = _for_phases(settings, start_fom)
    w = settings.weighting
    observed, n_obs = refl, len(refl.hkl)
    free = _free_set(refl, w.free_fraction, settings.seed)
    test = _test_set(refl, w.free_fraction, settings.test_fraction, settings.seed)
    d_min = refl.d_min
    shape = engine_grid(refl, settings)
    if settings.fill_unmeasured:
        refl, hl_exp, free, test = _with_unmeasured(refl, hl_exp, free, test, _fill_limit(settings, d_min))
    within = refl.d >= d_min - 1e-6  # the mask provider sees the data's resolution only (its grid may be coarse)
    inner = refl if within.all() or mask_provider is None else ReflectionSet(
        refl.cell, refl.spacegroup, refl.hkl[within], refl.fobs[within], refl.sigf[within])
    unmeasured = np.arange(len(refl.hkl)) >= n_obs
    filled = test | unmeasured  # in maps as σ_A·F_mod of the cycle before, never as F_obs
    settings = _for_resolution(settings, d_min)
    lsd = LocalDeviation(refl.cell, shape)
    fobs, eps, cen = refl.fobs, refl.epsilon, refl.centric
    bins = refl.resolution_bins(w.per_bin, w.bins, select=~unmeasured)
    d_start = max(settings.initial_d_min or d_min + settings.extension_extra, d_min) if settings.phase_extension \
        else d_min

    ref_q = reference_quantiles(d_min) if settings.protein.histogram_weight > 0 else None
    phib, fom = phase_fom_from_hl(hl_exp, cen, refl.centric_phase)
    hl_cur, hl_mod_prev = hl_exp.copy(), None
    coef = fom * fobs * np.exp(1j * phib)
    fill = np.zeros_like(coef)
    trace: list[dict[str, float]] = []
    mask_prev: np.ndarray | None = None
    provider_score: np.ndarray | None = None
    provider_ranks: np.ndarray | None = None  # ranked once per provider run, not in every cycle that mixes them
    level = 0.0  # solvent level of the previous cycle's map (e/Å³), 0 = the map mean at first
    n_cycles = settings.cycles
    hl_mods: list[np.ndarray] = []  # the modified-map HL terms of the cycles the output averages
    n_average = int(round(settings.output_average * n_cycles))
    for cycle in range(n_cycles):
        last = cycle == n_cycles - 1
        d_now = _schedule(settings, cycle, d_start, d_min)
        active = (refl.d >= d_now - 1e-6) & ~free & ~filled
        rho = refl.to_map(np.where(active, coef, np.where(filled, fill, 0.0)), shape)
        mean_fom = float(np.average(fom, weights=fobs))
        radius = _mask_radius(settings, cycle, d_min, mean_fom)
        wp = _provider_weight(settings, cycle) if mask_provider is not None else 0.0
        if wp > 0 and (provider_score is None or cycle % settings.mask.provider_every == 0):
            provider_score = _provider_score(mask_provider, inner, (coef * active)[within], shape, cycle, d_min,
                                             mean_fom)
            provider_ranks = _ranks(provider_score)
        score = _mask_score(settings, refl, lsd, rho, radius, level, provider_score, provider_ranks, wp)
        solvent = solvent_mask(score, s_frac)
        level = float(rho[solvent].mean())
        rho, truncated, k, added = _modify_density(settings, cycle, rho, solvent, s_frac, ref_q, last)

        fmod = refl.from_map(rho)
        test_cc, test_r = test_agreement(refl, fmod, test)
        hl_mod, fmod_s, sa_ref, gamma = _modified_phases(refl, fmod, coef, w, bins, active, free)
        if hl_mod_prev is not None and w.damping > 0:
            hl_mod = (1.0 - w.damping) * hl_mod + w.damping * hl_mod_prev
        hl_mod_prev = hl_mod
        hl_mod = hl_mod * _ramp(w.ramp_start, w.ramp_cycles, cycle)
        inside = refl.d >= d_now - 1e-6
        hl_term = np.where(inside[:, None], hl_mod, 0.0)
        hl_new = hl_exp + hl_term
        if cycle >= n_cycles - n_average:
            hl_mods.append(hl_term)
        phib_new, fom_new = phase_fom_from_hl(hl_new, cen, refl.centric_phase)
        change = float(np.degrees(np.average(np.abs(np.angle(np.exp(1j * (phib_new - phib)))), weights=fobs)))
        fom_flipped = fom  # FOMs of the last flipping cycle: a flattened map's σ_A is inflated by its bias
        phib, fom, hl_cur = phib_new, fom_new, hl_new
        coef = map_coefficients(fobs, phib, fom, fmod_s, sa_ref, cen, w.map_coefficients)
        reached = (refl.d >= d_now - 1e-6) | (d_now <= d_min + 1e-6)  # extended terms once d_min is reached
        fill = np.where(filled & reached, sa_ref * _centric_restricted(fmod_s, refl) *
                        _fill_weight(settings, cycle, ~within), 0.0)
        agree = float((solvent == mask_prev).mean()) if mask_prev is not None else float("nan")
        mask_prev = solvent
        trace.append({"cycle": cycle + 1, "fom": float(np.average(fom, weights=fobs)), "phase_change": change,
                      "solvent_fraction": float(solvent.mean()), "mask_agreement": agree,
                      "radius": round(radius, 3), "d_min": round(d_now, 3), "k_flip": k,
                      "truncated": truncated, "solvent_add": added,
                      "sigmaa": float(np.average(sa_ref, weights=fobs)), "gamma": gamma,
                      "mask_source": "provider" if wp > 0 else "lsd", "test_cc": test_cc, "test_r": test_r})
        if on_cycle is not None:
            on_cycle(cycle + 1, phib, fom)
        if progress is not None:
            progress((cycle + 1) / n_cycles, f"density modification cycle {cycle + 1}/{n_cycles}, "
                                             f"FOM {trace[-1]['fom']:.3f}")
    if len(hl_mods) > 1:  # the output's phases: the mean of the last cycles' modified-map probabilities
        hl_cur = hl_exp + np.mean(hl_mods, axis=0)
        phib, fom = phase_fom_from_hl(hl_cur, cen, refl.centric_phase)
        coef = map_coefficients(fobs, phib, fom, fmod_s, sa_ref, cen, w.map_coefficients)
    final = refl.to_map(np.where(unmeasured, fill, coef), shape)
    if n_cycles > 1 and trace[-1]["k_flip"] == 0.0 and settings.solvent.method == "flip":  # k is exactly 0 when flattened
        fom = np.minimum(fom, fom_flipped)
    n = n_obs  # the results are the observed reflections'; the unmeasured ones only filled the maps
    return DMResult(reflections=observed, phib=np.degrees(phib[:n]), fom=fom[:n], hl=hl_cur[:n], fwt=coef[:n],
                    map=refl.crystal_map(final, name="density-modified"), mask=mask_prev,
                    trace=trace, info={"solvent_fraction": float(s_frac), "grid": list(shape), "cycles": n_cycles,
                                       "seconds": round(time.monotonic() - t0, 3),
                                       "test_reflections": int(test.sum()),
                                       "unmeasured_filled": int(unmeasured.sum()),
                                       "sigmaa_shells": int(bins.max()) + 1,
                                       "start_fom": round(start_fom, 4),
                                       "radius_extra": settings.mask.radius_extra,
                                       "sigmaa_scale": settings.weighting.sigmaa_scale,
                                       "test_cc": _final_mean(trace, "test_cc", settings.final_steps)})


def _with_unmeasured(refl: ReflectionSet, hl_exp: np.ndarray, free: np.ndarray, test: np.ndarray,
                     d_fill: float) -> tuple[ReflectionSet, np.ndarray, np.ndarray, np.ndarray]:
    """The reflection set completed to ``d_fill`` Å (:meth:`ReflectionSet.completed`) with the HL coefficients,
    free and test flags padded (no phase information, never free or test) for the unmeasured reflections."""
    full = refl.completed(d_fill)
    pad = len(full.hkl) - len(refl.hkl)
    no = np.zeros(pad, dtype=bool)
    return full, np.concatenate([hl_exp, np.zeros((pad, 4))]), np.concatenate([free, no]), np.concatenate([test, no])


def _centric_restricted(f: np.ndarray, refl: ReflectionSet) -> np.ndarray:
    """``f`` with every centric reflection's phase put on its allowed line (φ_c or φ_c + π): a modified map
    that is not quite symmetric (histogram matching ranks symmetry mates apart) gives centric F_mod a phase
    no symmetric map can hold, and a filled term must keep the next map symmetric."""
    rot = np.exp(1j * refl.centric_phase)
    return np.where(refl.centric, np.real(f * np.conj(rot)) * rot, f)


def _fill_weight(settings: DMSettings, cycle: int, beyond: np.ndarray) -> np.ndarray:
    """Weight of each filled term in the next map: 1 within the data's resolution; beyond it (``beyond``)
    ``extend_weight`` for the maps of the final steps (those at the final mask radius) and 0 before."""
    final = cycle + 1 >= settings.initial_steps + settings.shrink_steps
    return np.where(beyond, settings.extend_weight if final else 0.0, 1.0)


def _final_mean(trace: list[dict[str, float]], key: str, n: int) -> float:
    """Mean of ``key`` over the last ``n`` cycles (those at the final mask radius; less noisy than one)."""
    vals = [r[key] for r in trace[-max(n, 1):] if np.isfinite(r[key])]
    return float(np.mean(vals)) if vals else float("nan")


def _mask_radius(settings: DMSettings, cycle: int, d_min: float, mean_fom: float) -> float:
    """Radius (Å) of the local statistic: shrinking over the schedule to ``radius_scale`` × d_min, or growing
    as the figure of merit falls (``fom_slope``)."""
    r_final = d_min * settings.mask.radius_scale
    if settings.mask.fom_slope > 0:
        return r_final + d_min * settings.mask.fom_slope * (1.0 - mean_fom)
    return _schedule(settings, cycle, r_final + settings.mask.radius_extra, r_final)


def _provider_weight(settings: DMSettings, cycle: int) -> float:
    """Weight of the mask provider's ranks in ``cycle``: ``provider_weight``, moving to
    ``provider_weight_final`` over the shrink steps when that is set."""
    m = settings.mask
    if m.provider_weight_final is None:
        return m.provider_weight
    return _schedule(settings, cycle, m.provider_weight, m.provider_weight_final)


def _mask_score(settings: DMSettings, refl: ReflectionSet, lsd: LocalDeviation, rho: np.ndarray, radius: float,
                level: float, provider_score: np.ndarray | None, provider_ranks: np.ndarray | None,
                wp: float) -> np.ndarray:
    """Solvent-likeness of every voxel (higher = solvent): minus the local statistic of ``rho`` (symmetrized), the
    mask provider's score (the U-net), or a rank mix of the two (weight ``wp`` of the provider's ranks
    ``provider_ranks``, computed once per provider run)."""
    wp = wp if provider_score is not None else 0.0
    if wp >= 1.0:
        return provider_score
    score = -lsd(rho, radius, settings.mask.statistic, level)
    if settings.mask.symmetrize:
        score = symmetrized(score, refl.cell, refl.spacegroup)
    if wp > 0:
        score = wp * provider_ranks + (1.0 - wp) * _ranks(score)
    return score


def _modified_phases(refl: ReflectionSet, fmod: np.ndarray, coef: np.ndarray, w: Any, bins: np.ndarray,
                     active: np.ndarray, free: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(HL coefficients of the modified map's phases, its coefficients scaled to F_obs, σA per reflection, the
    bias fraction γ removed): σA from a free set (cross-validated) or by maximum likelihood over the work set
    (Read 1986 in E-value form)."""
    fobs, eps, cen = refl.fobs, refl.epsilon, refl.centric
    gamma = 0.0
    if w.bias_correction == "gamma" and free.any():
        fmod, gamma = _remove_bias(fmod, coef, active, free)
    if free.any() and w.bias_correction != "gamma":
        hl_mod, fmod_s, sa_ref = _cross_validated_weights(refl, fmod, bins, active, free, w.sigmaa_scale,
                                                          w.sigmaa_max)
        return hl_mod, fmod_s, sa_ref, gamma
    fmod_s = scale_to_obs(fobs, fmod, eps, bins, active)
    eo, ec = normalise(fobs, eps, bins, active), normalise(fmod_s, eps, bins, active)
    sa_ref = np.clip(sigmaa_ml(eo, ec, cen, bins, active) * w.sigmaa_scale, 0.0, w.sigmaa_max)[bins]
    return modified_phase_hl(eo, ec, fmod_s, cen, sa_ref), fmod_s, sa_ref, gamma


def _modify_density(settings: DMSettings, cycle: int, rho: np.ndarray, solvent: np.ndarray, s_frac: float,
                    ref_q: np.ndarray | None, last: bool) -> tuple[np.ndarray, float, float, float]:
    """Histogram matching and truncation of the protein region, flipping (or flattening) and level
    adjustment of the solvent, in place; returns (map, fraction truncated, flip factor k, solvent added)."""
    protein = ~solvent
    rms_before = float(np.sqrt(np.mean(rho[protein] ** 2)))
    if ref_q is not None:
        rho[protein] = match_histogram(rho[protein], ref_q, settings.protein.histogram_weight)
    rho, truncated = truncate_protein(rho, protein, _protein_now(settings, cycle))
    rms_after = float(np.sqrt(np.mean(rho[protein] ** 2)))
    rho, k = modify_solvent(rho, solvent, s_frac, _solvent_now(settings, cycle), rms_after / max(rms_before, 1e-12),
                            last)
    added = adjust_solvent_level(rho, solvent, settings.solvent)
    return rho, truncated, k, added


def _for_resolution(settings: DMSettings, d_min: float) -> DMSettings:
    """``settings`` with the low-resolution upper truncation filled in at d_min ≥ ``protein.low_resolution`` Å
    (a copy; the caller's settings are not changed)."""
    p = settings.protein
    if p.fraction_max is not None or p.fraction_max_low_resolution is None or d_min < p.low_resolution:
        return settings
    return replace(settings, protein=replace(p, fraction_max=p.fraction_max_low_resolution))


def _for_phases(settings: DMSettings, start_fom: float) -> DMSettings:
    """``settings`` with the σ_A scale for experimental phases of |F_obs|-weighted mean figure of merit
    ``start_fom``: ``weighting.sigmaa_scale_poor`` at or below ``poor_fom[0]``, moving linearly to
    ``sigmaa_scale`` at ``poor_fom[1]`` (a copy; the caller's settings are not changed)."""
    w = settings.weighting
    lo, hi = w.poor_fom
    if w.sigmaa_scale_poor is None or start_fom >= hi:
        return settings
    t = float(np.clip((start_fom - lo) / max(hi - lo, 1e-9), 0.0, 1.0))
    scale = w.sigmaa_scale_poor + (w.sigmaa_scale - w.sigmaa_scale_poor) * t
    return replace(settings, weighting=replace(w, sigmaa_scale=scale))


def _protein_now(settings: DMSettings, cycle: int) -> ProteinSettings:
    """Protein settings of ``cycle``: the truncated fraction on its schedule (``fraction_min_final``)."""
    p = settings.protein
    if p.fraction_min_final is None or p.fraction_min is None:
        return p
    return replace(p, fraction_min=_schedule(settings, cycle, p.fraction_min, p.fraction_min_final))


def _solvent_now(settings: DMSettings, cycle: int) -> SolventSettings:
    """Solvent settings of ``cycle``: the flip's γ on its schedule (``gamma_final``)."""
    sv = settings.solvent
    if sv.gamma_final is None:
        return sv
    return replace(sv, gamma=_schedule(settings, cycle, sv.gamma, sv.gamma_final))


def _ramp(start: float, cycles: int, cycle: int) -> float:
    """Weight of the modified map's phase term in ``cycle`` (0-based): ``start`` rising to 1 over ``cycles``."""
    if cycles <= 0:
        return 1.0
    return float(min(1.0, start + (1.0 - start) * cycle / cycles))


def _ranks(score: np.ndarray) -> np.ndarray:
    """Ranks of a score scaled to [0, 1] (so that scores of different kinds can be mixed)."""
    flat = score.ravel()
    r = np.empty(flat.size)
    r[np.argsort(flat, kind="stable")] = np.arange(flat.size) / max(flat.size - 1, 1)
    return r.reshape(score.shape)


def _cross_validated_weights(refl: ReflectionSet, fmod: np.ndarray, bins: np.ndarray, active: np.ndarray,
                             free: np.ndarray, scale: float, cap: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """σ_A measured on the free reflections only (left out of every map, so their F_mod holds no copy
    of their own input term), in coarse shells of ~150 free reflections; working and free reflections
    are scaled and normalised within their own group.  Returns (HL_mod, scaled F_mod, σ_A per reflection)."""
    fobs, eps, cen = refl.fobs, refl.epsilon, refl.centric
    n_coarse = int(np.clip(free.sum() // 150, 1, 8))
    coarse = refl.resolution_bins(n_bins=n_coarse, select=free)
    sa = np.clip(sigmaa_ml(normalise(fobs, eps, coarse, free), normalise(fmod, eps, coarse, free), cen, coarse,
                           free) * scale, 0.0, cap)[coarse]
    fmod_s = np.where(free, scale_to_obs(fobs, fmod, eps, coarse, free), scale_to_obs(fobs, fmod, eps, bins, active))
    eo = np.where(free, normalise(fobs, eps, coarse, free), normalise(fobs, eps, bins, active))
    ec = np.where(free, normalise(fmod_s, eps, coarse, free), normalise(fmod_s, eps, bins, active))
    return modified_phase_hl(eo, ec, fmod_s, cen, sa), fmod_s, sa


def _remove_bias(fmod: np.ndarray, f_in: np.ndarray, active: np.ndarray, free: np.ndarray) -> tuple[np.ndarray, float]:
    """F_ind = (F_mod − γ F_in)/(1 − γ) on the reflections that were in the map (settings docstring)."""
    w2 = np.abs(f_in) ** 2
    cross = np.real(fmod * np.conj(f_in))
    g_work = cross[active].sum() / max(w2[active].sum(), 1e-300)
    g_free = cross[free].sum() / max(w2[free].sum(), 1e-300)
    gamma = float(np.clip(g_work - g_free, 0.0, 0.9))
    out = np.where(active, (fmod - gamma * f_in) / (1.0 - gamma), fmod)
    return out, gamma


def _provider_score(provider: MaskProvider, refl: ReflectionSet, coef: np.ndarray, shape: tuple[int, int, int],
                    cycle: int, d_min: float, mean_fom: float) -> np.ndarray:
    """The provider's solvent score on the engine grid, symmetry-averaged."""
    def map_on(sh: tuple[int, int, int]) -> CrystalMap:
        return refl.crystal_map(refl.to_map(coef, tuple(int(x) for x in sh)), name="current")

    out = provider(MaskRequest(cycle=cycle, map=map_on(shape), map_on=map_on, d_min=d_min, mean_fom=mean_fom))
    arr = out.array if isinstance(out, CrystalMap) else np.asarray(out)
    arr = resample(np.asarray(arr, dtype=np.float64), shape)
    return symmetrized(arr, refl.cell, refl.spacegroup)
