"""Choosing between density-modification runs without true phases.

Every candidate runs in full; each result is then judged by an omit cross-check on amplitudes only
(:func:`omit_agreement`): the reflections, in ``folds`` random disjoint parts, are left out of the final
map one part at a time, the solvent of that map is flattened inside the run's final mask, and the
correlation of the flattened map's |E| with |E_obs| on the omitted reflections is measured (the omitted
amplitudes are not in the map they are predicted from; like a composite omit map, the other phases
still carry a memory of them).  The run with the higher correlation is kept.  No threshold, no fitted
parameter: ties (or no finite statistic) keep the first candidate, the default.  (A true free set left
out of every cycle, ``DMSettings.test_fraction``, cost 2–5° of final phase error at 5 % on the dev
crystals of benchmarks/bench_density_modify.py, more than the choice can win back.)

Candidates: ``"default"`` (the engine's defaults, aggressive: truncation of the lowest 45 %, flip γ
1 → 0.8, mask radius from d_min + 4 Å) and ``"conservative"`` (cctbx-like: truncation 35 %, γ 1,
radius from d_min + 2.5 Å), which did better on some low-resolution and measured-data crystals.
"""
from __future__ import annotations

import copy
from typing import Callable

import numpy as np

from crysplugins.crystal.dm.engine import DMResult, run_dm
from crysplugins.crystal.dm.masking import MaskProvider
from crysplugins.crystal.dm.reflections import ReflectionSet
from crysplugins.crystal.dm.settings import DMSettings
from crysplugins.crystal.dm.weighting import normalise
from crysplugins.errors import CrysError


def conservative(settings: DMSettings) -> DMSettings:
    """``settings`` with the cctbx-like protein truncation (35 %), a constant flip γ and a mask radius
    starting at d_min + 2.5 Å."""
    out = copy.deepcopy(settings)
    out.protein.fraction_min, out.protein.fraction_min_final = 0.35, None
    out.solvent.gamma_final = None
    out.mask.radius_extra = 2.5
    return out


VARIANTS: dict[str, Callable[[DMSettings], DMSettings]] = {"default": copy.deepcopy, "conservative": conservative}


def variant_settings(settings: DMSettings, names: tuple[str, ...]) -> list[DMSettings]:
    """One settings object per candidate name (unknown names refused in one sentence)."""
    bad = [n for n in names if n not in VARIANTS]
    if bad:
        raise CrysError(f"Unknown density-modification variant {bad[0]!r}; choose from {', '.join(VARIANTS)}.")
    return [VARIANTS[n](settings) for n in names]


def omit_predictions(result: DMResult, folds: int = 10, seed: int = 0, source: str = "fwt") -> np.ndarray:
    """Structure factors of every reflection predicted from an omit-and-flatten map that lacks it: for each
    of ``folds`` random parts, the final map coefficients (``source`` ``"fwt"``: the run's weighted map
    coefficients; ``"phases"``: m|F_obs| at the run's best phases, without the modified map's own terms)
    without that part, the solvent (``result.mask``) set to its mean, structure factors on the omitted part."""
    refl, solvent = result.reflections, result.mask
    coef = result.fwt if source == "fwt" else result.fom * refl.fobs * np.exp(1j * np.radians(result.phib))
    part = np.random.default_rng(seed).integers(0, folds, len(refl.hkl))
    fpred = np.zeros(len(refl.hkl), dtype=np.complex128)
    for k in range(folds):
        omit = part == k
        rho = refl.to_map(np.where(omit, 0.0, coef), solvent.shape)
        rho[solvent] = rho[solvent].mean()
        fpred[omit] = refl.from_map(rho)[omit]
    return fpred


def omit_agreement(result: DMResult, folds: int = 10, seed: int = 0, source: str = "fwt") -> float:
    """Correlation of |E| of :func:`omit_predictions` with |E_obs| over all reflections (|E| in
    ~500-reflection resolution shells, so the shared fall-off does not count); nan without a mask."""
    refl = result.reflections
    if result.mask is None or len(refl.hkl) < 10 * folds:
        return float("nan")
    bins = refl.resolution_bins(500)
    eo = normalise(refl.fobs, refl.epsilon, bins)
    ec = normalise(omit_predictions(result, folds, seed, source), refl.epsilon, bins)
    return float(np.corrcoef(eo, ec)[0, 1])


def choose(stats: list[float]) -> int:
    """Index of the highest finite statistic; the first (the default) on ties or when none is finite."""
    vals = np.array([s if np.isfinite(s) else -np.inf for s in stats])
    return int(np.argmax(vals)) if np.isfinite(vals).any() else 0


def run_selected(refl: ReflectionSet, hl_exp: np.ndarray, settings: DMSettings, names: tuple[str, ...],
                 solvent_fraction: float | None = None, mask_provider: MaskProvider | None = None,
                 progress: Callable[[float, str], None] | None = None,
                 source: str = "fwt") -> tuple[DMResult, list[DMResult]]:
    """Run every candidate in ``names`` (same test set) and return (the chosen result, all results).
    The chosen result's ``info["selection"]`` names every candidate with its test statistic."""
    results = []
    for i, st in enumerate(variant_settings(settings, names)):
        sub = None if progress is None else (lambda f, msg, i=i: progress((i + f) / len(names), f"{names[i]}: {msg}"))
        results.append(run_dm(refl, hl_exp, st, solvent_fraction=solvent_fraction, mask_provider=mask_provider,
                              progress=sub))
    stats = [omit_agreement(r, seed=settings.seed, source=source) for r in results]
    for r, st in zip(results, stats):
        r.info["omit_cc"] = st
    best = choose(stats)
    chosen = results[best]
    chosen.info["selection"] = {"chosen": names[best], "omit_cc": dict(zip(names, stats))}
    return chosen, results
