"""Settings of the density-modification engine, one dataclass for every idea (see the modules named).

Distances in Å, phases in degrees, fractions of the cell volume.
"""
from __future__ import annotations

from dataclasses import dataclass, field

#: The first-mask radius extras (Å, ``MaskSettings.radius_extra``) of the runs of an ensemble
#: (``DMSettings.ensemble``, ``ensemble_below``; ``density-modify --ensemble``).
ENSEMBLE_RADII = (4.0, 3.0, 5.0)


@dataclass
class SolventSettings:
    """Solvent flipping (Abrahams & Leslie 1996) and the solvent-level adjustment (:mod:`.solvent`).

    ``method``: ``"flip"`` (ρ_s + k(ρ − ρ_s) with k = −γ(1 − S)/S, the γ correction that removes the
    input map's own contribution from the modified map) or ``"flatten"``.  ``gamma`` scales the flip
    (moving linearly to ``gamma_final`` over the shrink steps when that is not None: full flipping
    while the phases are poor, a gentler flip, i.e. less of the flipped noise, once they are better;
    1 → 0.8 gave 1.4° less final error at 50° and 0.3° at 65° start error than a constant 1 on the
    dev crystals of benchmarks/bench_density_modify.py);
    ``scale_flip`` multiplies k by the squared ratio of protein rms after/before truncation;
    ``flatten_last`` flattens in the final cycle (the output map then carries no flipped noise) when the
    flip factor would still be |k| >= ``flatten_last_min_k``: a strong flip (low solvent content) leaves
    amplified noise that flattening removes (1EJG, 1IA1, 1RX2: |k| 1.0-1.2, 1-3° better flattened), while
    after a mild one (|k| 0.4-0.85, solvent above ~0.42) the flattened map's phases lean back towards the
    input's and were 0.1-0.5° worse on the dev crystals (the packed low-resolution tuning set of
    benchmarks/build_dm_dev_sources.py and the dev split; 0.2° better on the held-out crystals it changes).
    ``adjust_level`` raises the solvent level to what a protein/solvent density ratio of
    ``protein_solvent_ratio`` implies (the map has no F000).
    """

    method: str = "flip"
    gamma: float = 1.0
    gamma_final: float | None = 0.8
    scale_flip: bool = True
    flatten_last: bool = True
    flatten_last_min_k: float = 0.9
    adjust_level: bool = True
    protein_solvent_ratio: float = 1.31


@dataclass
class ProteinSettings:
    """Protein-density modification (:mod:`.protein`): truncation of the lowest ``fraction_min`` and the
    highest ``fraction_max`` of the protein-region density (None: no truncation at that end), after
    histogram matching (:mod:`.histogram`) by ``histogram_weight`` (0 = none, 1 = the full match).
    ``fraction_min_final``: the lower fraction moves linearly from ``fraction_min`` to this value over
    the shrink steps (None = constant).  Default 0.45, not cctbx's 0.35: with the running mean of the
    modified phases gone (``WeightingSettings.damping``), the stronger truncation gave 0.2° less final
    error at 50° and 4° less at 65° start error on the dev crystals; 0.2 and 0.65 were much worse, and
    matching the full reference histogram (weight 1, or 0.3 on top of truncation) was no better.
    ``fraction_max_low_resolution``: the upper fraction used when ``fraction_max`` is None and d_min ≥
    ``low_resolution`` Å.  At 2.4–3.0 Å the highest 2 % of the protein density are noise peaks more than atoms:
    truncating them gave 0.45° less final error at 50° and 2.2° less at 65° on the packed low-resolution tuning
    crystals (1 % / 5 %: 0.22 / 0.76° and 1.4 / 1.3°) and 2.0 / 0.3° less on 1IA1 (2.88 Å), while at 1.5–2.2 Å it
    cost 0.8–8° (1EJG, 1ORC, 1RX2, 1RX4: resolved atoms are the density's peaks)."""

    fraction_min: float | None = 0.45
    fraction_max: float | None = None
    fraction_max_low_resolution: float | None = 0.02
    low_resolution: float = 2.4
    histogram_weight: float = 0.0
    fraction_min_final: float | None = None


@dataclass
class MaskSettings:
    """The solvent mask (:mod:`.masking`): local standard deviation in a cone-weighted sphere whose radius
    shrinks linearly from d_min + ``radius_extra`` to d_min × ``radius_scale`` over the shrink cycles (a
    wide start, 4 Å, smooths the first noisy masks; cctbx starts at + 1 Å), or
    scores from a mask provider; re-made every ``every`` cycles (providers: every ``provider_every``).
    ``fom_slope`` > 0 makes the radius follow the phases instead: d_min × (``radius_scale`` +
    ``fom_slope`` × (1 − ⟨m⟩)) with ⟨m⟩ the current |F|-weighted mean FOM (poor phases need a larger
    sphere; CALIBRATION.md).  ``provider_weight``: weight of the provider's ranks in a rank mix with the
    local statistic, moving to ``provider_weight_final`` over the shrink steps when that is set (the
    provider is not run in cycles where its weight is 0).  By default the U-net's ranks weigh 0.5 in the
    first, poorest maps and nothing at the end, where the local statistic, re-made every cycle from a
    better map, is the sharper of the two: on the dev crystals a constant 0.5 (every 10 cycles) was
    0.9° worse at 50° and 1.4° worse at 65° start error than the local statistic alone, 0.5 → 0 (every
    5 cycles) ties with it (benchmarks/bench_density_modify.py).  ``statistic``: ``"sd"`` (local standard deviation) or ``"rms"`` (local rms about the previous
    cycle's solvent level)."""

    radius_extra: float = 4.0
    radius_scale: float = 1.0
    every: int = 1
    provider_every: int = 5
    symmetrize: bool = True
    statistic: str = "rms"
    fom_slope: float = 0.0
    provider_weight: float = 0.5
    provider_weight_final: float | None = 0.0


@dataclass
class WeightingSettings:
    """σ_A weighting of the modified map against |F_obs| (:mod:`.weighting`).

    ``bins``: resolution shells (equal counts; ``per_bin`` reflections each when None, at most 20).  150,
    not 500: a small crystal (1,300–5,000 reflections) then gets 8–20 shells instead of 2–9, and σ_A
    can follow its fall with resolution.  On ten small crystals of our own (26–60 residues, packed from
    train-family chains by benchmarks/build_dm_dev_sources.py --segment) ours − cctbx went from −0.22 /
    +0.19 / +1.22° to −0.72 / −1.29 / −3.09° at 40 / 50 / 65° start error (local-variance mask; the U-net
    −0.28 / −0.61 / +0.56° to −0.75 / −1.32 / −1.45°); crystals with 10,000 reflections or more keep their 20
    shells and their results.
    ``map_coefficients``: ``"2mFo-DFc"`` (acentric; centric mFo) or ``"mFo"``.  ``free_fraction``: part
    of the reflections left out of every cycle's map so that σ_A of the modified phases can be measured
    without the map's own bias (0 = estimate on all reflections).  ``damping``: weight of the previous
    cycle's modified-map phase term (a running mean, 0 = none; none by default because the running mean
    carries the first, worst maps' phases forward and locks them in: at 65° start error it cost up to
    20° on 1EJG, benchmarks/bench_density_modify.py).  ``sigmaa_scale`` shrinks σ_A.
    ``sigmaa_scale_poor``: the scale used instead when the experimental phases are poor, i.e. their
    |F_obs|-weighted mean figure of merit ⟨m⟩ is at most ``poor_fom[0]``, moving linearly to ``sigmaa_scale`` at
    ``poor_fom[1]`` (None: never).  From phases that poor (~80° mean error, ⟨m⟩ 0.16–0.28) most of what the
    modified map's amplitudes share with |F_obs| is its memory of its own input, so the ML σ_A is inflated
    (0.9 by the end, FOMs 0.88 at a true 80° error) and the modified phases drown the experimental ones: the
    runs ended on average 3.8° worse than they started.  On the tuning sets at 80° start error (packed, small
    crystals and the dev split, seeds 1 and 2, 46 runs, local-variance mask), a scale of 0.8 / 0.7 / 0.6 / 0.5
    / 0.4 / 0.3 moved the mean final − start error from +3.82° to +1.34 / +0.35 / −0.79 / −1.12 / −1.84 /
    −1.84° (runs better than their start: 8 of 46 → 14 / 18 / 22 / 21 / 27 / 32); 0.4 keeps the largest
    gains (−13.8°).  A constant scale at every start error was worse at 40° and 50° (0.9: +0.9 to +2.3° on the
    three sets; 0.95: −0.1 to +1.0°), where the σ_A estimate is sound.
    ``ramp_start``/``ramp_cycles``: the modified map's HL term is multiplied by a weight rising linearly
    from ``ramp_start`` in the first cycle to 1 after ``ramp_cycles`` cycles (a weak start, so that the
    first maps' phases cannot lock in with FOMs near 1; 0 cycles = full weight from the start).
    ``bias_correction``: ``"gamma"`` removes the input map's share γ from the modified structure factors,
    F_ind = (F_mod − γ·F_in)/(1 − γ), γ measured as the difference between the regression of F_mod on
    F_in over the working and the free reflections (needs ``free_fraction`` > 0; Cowtan 1999, Acta
    Cryst. D55, 1555–1567; Abrahams 1997, Acta Cryst. D53, 371–376); ``"none"``.
    """

    bins: int | None = None
    per_bin: int = 150
    map_coefficients: str = "2mFo-DFc"
    free_fraction: float = 0.0
    damping: float = 0.0
    sigmaa_scale: float = 1.0
    sigmaa_scale_poor: float | None = 0.4
    poor_fom: tuple[float, float] = (0.25, 0.35)
    sigmaa_max: float = 0.99
    ramp_start: float = 1.0
    ramp_cycles: int = 0
    bias_correction: str = "none"


@dataclass
class DMSettings:
    """Everything the engine (:func:`crysplugins.crystal.dm.engine.run_dm`) needs besides the data.

    Cycle schedule as cctbx's: ``initial_steps`` at the initial radius (and initial resolution when
    ``phase_extension``), ``shrink_steps`` over which radius (and resolution) move to their final values,
    ``final_steps`` at the end; with ``phase_extension`` the resolution starts at ``initial_d_min``
    (default: d_min + ``extension_extra`` Å).  ``grid_rate``: grid spacing d_min / rate.  ``solvent_fraction`` None:
    the caller must give one to the engine.  ``test_fraction``: part of the reflections left out of every
    map (and of σ_A) only to judge the result: the agreement of the modified map's amplitudes with |F_obs|
    on them is traced (``test_cc``, ``test_r``); they enter later maps only as σ_A·F_mod of the cycle
    before.  Off by default: 5 % cost 2–5° of final phase error on the dev crystals (DM needs the strong
    terms), so :mod:`.selection` judges runs by omit maps instead.  ``fill_unmeasured``: the reflections of
    the ASU to d_min that were not measured enter every map as σ_A·F_mod of the cycle before (as cctbx fills
    its missing F_obs with the scaled F_calc); the results are given for the measured ones only.  With 8 % of
    the reflections of the tuning crystals removed at random it gave back 4.7° of final error at 50° and 5.0° at
    65° (13 and 12 of 13 crystals better); on the measured 1RX2 and 1RX4 data (94–95 % complete, 16 crystal-levels
    of benchmarks/bench_density_modify.py) 10 of 16 were better with the LV mask (mean −0.23°), 14 of 16 with
    the U-net (−0.52°).  ``extend_fraction``: with ``fill_unmeasured``, the filled reflections reach beyond the
    data to d_min·(1 − extend_fraction) (resolution extension, the "free lunch" of Caliandro et al. 2005, Acta
    Cryst. D61, 556–565), on the same grid; those beyond the data enter only the maps of the ``final_steps``,
    at ``extend_weight``.  On the two tuning sets (LV, seed 1; ours − cctbx at 50° / 65°) this moved the packed
    set from −0.70 / −7.68° to −0.92 / −7.72° and the old dev split from −2.74 / −3.81° to −3.14 / −3.93°; the
    extended terms in every cycle at full weight were worse at 65° on both (−5.53°, −1.89°).
    ``output_average``: the output's phases, FOMs, HL coefficients and map come from the experimental HL
    coefficients plus the mean of the modified-map HL terms of this last share of the cycles (0, or a share
    below two cycles: the last cycle's alone); the cycles themselves are unchanged.  Successive cycles' maps
    err in different places, so their mean probability is closer to the truth (as averaging several
    solutions).  On the tuning sets (LV, seed 1, 40 cycles, ours − cctbx at 50° / 65°): the last cycle alone
    −0.92 / −7.72° (packed set) and −3.14 / −3.93° (dev split); the last 5 cycles −1.13 / −7.87 and
    −3.36 / −4.06; 10: −1.20 / −7.85 and −3.41 / −4.02; 20 (the default half): −1.38 / −8.02 and
    −3.41 / −4.10; 30: −1.37 / −8.00 and −3.27 / −4.05.
    ``ensemble``: the initial mask radius extras (Å, ``mask.radius_extra``) of several runs whose output is
    averaged (:mod:`.ensemble`); empty: see ``ensemble_below``; one value: one run.  Not the default for all data
    because it multiplies the engine's time by the number of runs.  ``density-modify --ensemble`` runs
    :data:`ENSEMBLE_RADII` (4, 3, 5): on the three tuning
    sets (local-rms mask, seeds 1 and 2; dev split / packed / small crystals) the final error moved by
    −0.24 / −0.03 / −0.00° at 40° start error, −0.61 / −0.16 / −0.16° at 50°, −1.87 / −1.09 / −2.86° at 65° and
    −0.86 / −0.35 / −0.30° at 80°; on the dev split the average of the three runs beat the best of them at 50° and
    65° (15.63° against 16.08° and 28.99° against 30.25°).  Two runs gained about half as much.
    ``ensemble_below``: with no ``ensemble`` given, the ensemble :data:`ENSEMBLE_RADII` is run all the same when
    the engine's whole-cell grid has fewer points than this (0: never).  The grid sets the cost (every cycle's
    FFTs, the local statistic and the U-net read the whole cell): below 100,000 points three runs take 1–3 s on
    one core.  The ensemble is better on average wherever it was measured; larger grids keep one run for its
    time (three runs would take 0.45× (local rms) and 0.87× (U-net) cctbx's time instead of 0.16× and 0.39×).
    """

    solvent_fraction: float | None = None
    initial_steps: int = 10
    shrink_steps: int = 20
    final_steps: int = 10
    grid_rate: float = 2.5
    phase_extension: bool = False
    initial_d_min: float | None = None
    extension_extra: float = 1.0
    solvent: SolventSettings = field(default_factory=SolventSettings)
    protein: ProteinSettings = field(default_factory=ProteinSettings)
    mask: MaskSettings = field(default_factory=MaskSettings)
    weighting: WeightingSettings = field(default_factory=WeightingSettings)
    seed: int = 0
    test_fraction: float = 0.0
    fill_unmeasured: bool = True
    extend_fraction: float = 0.1
    extend_weight: float = 0.5
    output_average: float = 0.5
    ensemble: tuple[float, ...] = ()
    ensemble_below: int = 100_000

    @property
    def cycles(self) -> int:
        return self.initial_steps + self.shrink_steps + self.final_steps
