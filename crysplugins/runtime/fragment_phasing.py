"""Hybrid ab initio phasing of P1 fragment crystals: several candidate solutions, one amplitude-only score.

Candidates:

* every charge-flipping start (:mod:`crysplugins.crystal.charge_flipping`: random phases, flipping with a
  short density-modification screen every ``screen_every`` cycles, then ``dm_cycles`` of density
  modification of the start's best screened phases), the same seeds as the ``charge-flipping`` predictor;
* optionally a network prediction (phases, degrees) density-modified the same way, and charge flipping
  started from it;
* when none of these reaches the stopping CC (:func:`stopping_cc`), the consensus of the candidates that
  agree with each other (their mean phases on a common origin and hand) after density modification.

Each candidate gets the features of :mod:`crysplugins.crystal.solution_score` (after density
modification) and the logistic score's probability of being right (invariant phase error < 60°; with
three or more candidates the model that also reads their agreement).  The winner is the candidate that
the lone-candidate model ranks first, i.e. the highest density-modification CC: within one data set that
ranking picked a right start whenever there was one on the development fragments, while the agreement
sometimes favoured a recurring wrong solution; the agreement-aware probability is the better confidence
across data sets (higher ROC AUC), so it is the one reported.  Every
candidate is density-modified in full (charge flipping alone fully modifies only the starts whose short
screen passes, and its screen ranks the starts poorly at 2.0–2.5 Å).  Candidates are made until one's
density-modification CC reaches the stopping CC of the data's resolution (:func:`stopping_cc`: the
``charge-flipping`` predictor's 0.999 at 1.5 Å, lower from 2 Å, where right maps do not reach it but no wrong
one of the development fragments came near) or all are made; the most probable candidate wins.  Amplitudes and
the sequence only: the true phases are never used.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import gemmi
import numpy as np

from crysplugins.crystal import charge_flipping as cf
from crysplugins.crystal import solution_score as ss
from crysplugins.crystal.fourier import fourier_grid, phase_shift, stol2
from crysplugins.crystal.maps import centre_density, invert_grid
from crysplugins.crystal.origin import search_origin_hand
from crysplugins.crystal.refine import RefineResult, check_fragment_cell, density_modify
from crysplugins.interface import CrystalMap, Prediction, Sequence
from crysplugins.runtime.hand import hand_confidence, hand_logits


@dataclass
class Candidate:
    """One candidate solution: its name, density-modified result, features and probability of being right."""

    name: str
    refined: RefineResult
    seconds: float
    screen_cc: float = float("nan")
    features: dict[str, float] = field(default_factory=dict)
    probability: float = float("nan")
    rank: float = float("nan")


@dataclass
class Setup:
    """What every candidate of one data set shares: reflections, |E|, the Fourier grid, the DM settings."""

    cell: gemmi.UnitCell
    hkl: np.ndarray
    f_obs: np.ndarray
    e_obs: np.ndarray
    n_atoms: int
    d_min: float
    sequence: Sequence | str | None
    solvent_fraction: float | None
    rate: float = 3.0

    def dm(self, phases_deg: np.ndarray, cycles: int) -> RefineResult:
        return density_modify(None, (self.cell, self.hkl, self.f_obs), phases=phases_deg, sequence=self.sequence,
                              solvent_fraction=self.solvent_fraction, cycles=cycles, rate=self.rate)


def make_setup(cell: gemmi.UnitCell, hkl: np.ndarray, f_obs: np.ndarray, sequence: Sequence | str | None,
               solvent_fraction: float | None = None, n_atoms: int | None = None, rate: float = 3.0) -> Setup:
    """A :class:`Setup`; ``n_atoms`` defaults to the sequence's non-H atoms (else from the solvent volume).
    A cell that is too large (:func:`crysplugins.crystal.charge_flipping.check_size`) or too full
    (:func:`crysplugins.crystal.refine.check_fragment_cell`) is refused in one sentence."""
    check_fragment_cell(cell, sequence, solvent_fraction, "fragment-phasing")
    hkl = np.asarray(hkl, dtype=np.int64).reshape(-1, 3)
    f_obs = np.asarray(f_obs, dtype=np.float64)
    if n_atoms is None:
        if sequence is not None:
            n_atoms = ss.expected_atoms(sequence)
        else:  # ~ 18 Å^3 per protein atom in the non-solvent part of the cell
            n_atoms = max(int(cell.volume * (1.0 - float(solvent_fraction or 0.5)) / 18.0), 4)
    d_min = float(1.0 / np.sqrt(4.0 * stol2(cell, hkl).max()))
    cf.check_size(cell, len(hkl), fourier_grid(cell, hkl, d_min=d_min, rate=rate).shape)  # a protein cell: refused
    return Setup(cell, hkl, f_obs, cf.normalise_amplitudes(cell, hkl, f_obs), int(n_atoms), d_min, sequence,
                 solvent_fraction, rate)


def flip_candidate(setup: Setup, start: int, seed: int = 0, flip_cycles: int = 1000, dm_cycles: int = 200,
                   screen_cycles: int = 15, screen_every: int = 200, screen_pass: float = 0.99,
                   start_phases: np.ndarray | None = None, name: str | None = None,
                   check: Callable[[], None] | None = None) -> Candidate:
    """One charge-flipping start (as :func:`crysplugins.crystal.charge_flipping.solve` runs it), then DM.

    ``start_phases`` (degrees) start the flipping from given phases instead of random ones.
    """
    t0 = time.monotonic()
    fg = fourier_grid(setup.cell, setup.hkl, d_min=setup.d_min, rate=setup.rate)
    best: dict[str, Any] = {"score": -np.inf, "phases": None}

    def monitor(phases: np.ndarray) -> bool:
        screen = setup.dm(np.degrees(phases), screen_cycles)
        if screen.score > best["score"]:
            best.update(score=screen.score, phases=screen.phases)
        return screen.score >= screen_pass

    rng = np.random.default_rng([seed, start])
    init = None if start_phases is None else np.deg2rad(start_phases)
    cf.flip_one(fg, setup.e_obs, rng, cycles=flip_cycles, check=check, monitor=monitor,
                monitor_every=screen_every, start_phases=init)
    refined = setup.dm(best["phases"], dm_cycles)
    return Candidate(name or f"charge-flipping start {start}", refined, time.monotonic() - t0,
                     screen_cc=float(best["score"]))


def dm_candidate(setup: Setup, phases_deg: np.ndarray, name: str, dm_cycles: int = 200) -> Candidate:
    """A candidate from given phases (degrees; e.g. a network prediction) after ``dm_cycles`` of DM."""
    t0 = time.monotonic()
    refined = setup.dm(np.asarray(phases_deg, dtype=np.float64), dm_cycles)
    return Candidate(name, refined, time.monotonic() - t0)


def prediction_phases(prediction: Prediction, hkl: np.ndarray) -> np.ndarray | None:
    """Phases (degrees) of a prediction's ``phases`` MTZ at ``hkl`` (Friedel mates: φ(−h) = −φ(h)); None if absent."""
    refl = prediction.reflections.get("phases")
    label = None if refl is None else refl.columns.get("PHI")
    if label is None:
        return None
    table = {tuple(h): p for h, p in zip(refl.miller_array().astype(np.int64).tolist(),
                                         np.asarray(refl.mtz.column_with_label(label).array, dtype=float).tolist())}
    out = np.full(len(hkl), np.nan)
    for i, h in enumerate(np.asarray(hkl).tolist()):
        p = table.get(tuple(h))
        q = table.get((-h[0], -h[1], -h[2]))
        out[i] = p if p is not None else (-q if q is not None else np.nan)
    return out if np.isfinite(out).all() else None


def score_candidates(setup: Setup, candidates: list[Candidate], models: ss.ScoreModels) -> None:
    """Fill every candidate's features (the set features depend on the whole set), probability and rank."""
    for c in candidates:
        c.features.update(dm_log=ss.dm_log(c.refined.score), d_min=setup.d_min)
    if len(candidates) >= ss.MIN_SET:
        extra = ss.set_features(setup.hkl, setup.e_obs, [c.refined.phases for c in candidates],
                                [c.features["dm_log"] for c in candidates])
        for c, x in zip(candidates, extra):
            c.features.update(x)
    for c in candidates:
        c.probability = models.probability(c.features, len(candidates))
        c.rank = models.single.probability(c.features)


#: two candidates agree when, on their best common origin and hand, their |F|-weighted phase difference is
#: below this (degrees).  On a 15-residue fragment at 2.0 Å unrelated solutions aligned at 67–77° and right ones
#: at 57–64°; of 60, 65 and 68° the 65° consensus helped most on the development fragments (none in the
#: benchmark; benchmarks/fragment_consensus_dev.py).
CONSENSUS_AGREE = 65.0


def consensus_candidate(setup: Setup, candidates: list[Candidate], dm_cycles: int = 200,
                        agree: float = CONSENSUS_AGREE) -> Candidate | None:
    """The mean phases of the largest group of agreeing candidates, after ``dm_cycles`` of DM; None when no
    two candidates agree.

    The seed is the candidate that agrees with the most others (ties: the higher DM CC); its group is the
    seed and every candidate within ``agree`` degrees of it, each moved onto the seed's origin and hand
    (:func:`crysplugins.crystal.origin.search_origin_hand`), and their unit phase vectors are summed.  Several
    partly right solutions err in different places, so their mean is closer to the truth than any one
    (multi-solution averaging); amplitudes only, like every candidate.
    """
    t0 = time.monotonic()
    phases = [c.refined.phases for c in candidates]
    n = len(phases)
    dist = np.full((n, n), np.inf)
    for i in range(n):
        for j in range(i + 1, n):
            dist[i, j] = dist[j, i] = search_origin_hand(setup.hkl, setup.f_obs, phases[i], phases[j]).phase_error
    close = dist < agree
    seed = max(range(n), key=lambda i: (int(close[i].sum()), candidates[i].refined.score))
    group = [j for j in range(n) if close[seed, j]]
    if not group:
        return None
    z = np.exp(1j * np.deg2rad(phases[seed]))
    for j in group:
        z += np.exp(1j * np.deg2rad(search_origin_hand(setup.hkl, setup.f_obs, phases[seed], phases[j]).phases))
    refined = setup.dm(np.degrees(np.angle(z)), dm_cycles)
    return Candidate(f"consensus of {len(group) + 1} candidates", refined, time.monotonic() - t0)


@dataclass
class HybridResult:
    """Every candidate (in the order made), the index of the winner and the total time (s)."""

    candidates: list[Candidate]
    best: int
    seconds: float

    @property
    def winner(self) -> Candidate:
        return self.candidates[self.best]


#: the stopping DM CC: at 1.5 Å right maps of 2–10 residues reach 0.999 (development minimum 0.9985) and the
#: ``charge-flipping`` predictor stops there; from ``LOW_RES_FROM`` Å right maps end at 0.88–0.998, so the
#: search stops at ``LOW_RES_STOP``, above every wrong candidate of the 60 development fragments of 2.0–2.5 Å
#: (highest 0.964; 144 of 616 candidates wrong).  Replayed on their stored candidates it makes 384 of the 616,
#: loses no success and the winner's error rises by 0.75° on average (benchmarks/fragment_stop_dev.py).
HIGH_RES_STOP = 0.999
LOW_RES_STOP = 0.98
LOW_RES_FROM = 1.75


def stopping_cc(d_min: float) -> float:
    """The DM CC at which a candidate is taken as right and the search ends, for data to ``d_min`` Å."""
    return HIGH_RES_STOP if d_min < LOW_RES_FROM else LOW_RES_STOP


def solve(setup: Setup, network: Callable[[], np.ndarray | None] | None = None, n_starts: int = 8, seed: int = 0,
          flip_cycles: int = 1000, dm_cycles: int = 200, stop_score: float | None = None,
          extra_starts: int = 4, extend_below: float = 0.6,
          flip_from_network: bool = True, consensus: bool = True, models: ss.ScoreModels | None = None,
          progress: Callable[[float, str], None] | None = None,
          check: Callable[[], None] | None = None) -> HybridResult:
    """Make candidates until one's DM CC reaches ``stop_score`` (None: :func:`stopping_cc` of the data's
    resolution), then return the best ranked one.

    Order: random charge-flipping start 0; then, when ``network()`` (called only now, as it may be slow)
    gives phases (degrees), those phases after DM and charge flipping started from them; then starts 1, 2, …
    (at most ``n_starts``; the ``charge-flipping`` predictor's seeds).  When no candidate then reaches
    ``stop_score`` and the best ranked one's probability is below ``extend_below``, ``extra_starts`` more
    random starts are made (a right start may simply not be among the first ones).  Still without a
    candidate at ``stop_score``, the ``consensus`` of the agreeing candidates (:func:`consensus_candidate`)
    joins them; like the others it wins only with the highest DM CC.
    """
    t0 = time.monotonic()
    models = models or ss.load_score()
    stop = stopping_cc(setup.d_min) if stop_score is None else stop_score
    plan: list[Callable[[], Candidate | None]] = [
        lambda i=i: flip_candidate(setup, i, seed, flip_cycles, dm_cycles, check=check) for i in range(n_starts)]
    if network is not None:  # after the first random start, which alone suffices at 1.5 Å
        net: dict[str, Any] = {}

        def from_network() -> Candidate | None:
            net["phases"] = network()
            return None if net["phases"] is None else dm_candidate(setup, net["phases"], "network + DM", dm_cycles)

        def flip_network() -> Candidate | None:
            return None if net.get("phases") is None else flip_candidate(
                setup, 0, seed, flip_cycles, dm_cycles, start_phases=net["phases"],
                name="charge flipping from the network", check=check)

        plan[1:1] = [from_network, flip_network] if flip_from_network else [from_network]
    cands: list[Candidate] = []
    for k, make in enumerate(plan):
        cand = make()
        if cand is None:
            continue
        cands.append(cand)
        if progress is not None:
            progress(0.95 * (k + 1) / len(plan), f"{cand.name}: DM CC {cand.refined.score:.4f}")
        if cand.refined.score >= stop:
            break
    score_candidates(setup, cands, models)
    best = int(np.argmax([c.rank for c in cands]))
    if cands[-1].refined.score < stop and cands[best].probability < extend_below:
        for i in range(n_starts, n_starts + extra_starts):
            cands.append(flip_candidate(setup, i, seed, flip_cycles, dm_cycles, check=check))
            if progress is not None:
                progress(0.95, f"extra {cands[-1].name}: DM CC {cands[-1].refined.score:.4f}")
            if cands[-1].refined.score >= stop:
                break
        score_candidates(setup, cands, models)
        best = int(np.argmax([c.rank for c in cands]))
    if consensus and len(cands) >= 2 and max(c.refined.score for c in cands) < stop:
        cons = consensus_candidate(setup, cands, dm_cycles)
        if cons is not None:  # an average of the set: its set features would count it twice, so lone model
            cons.features.update(dm_log=ss.dm_log(cons.refined.score), d_min=setup.d_min)
            cons.probability = cons.rank = models.single.probability(cons.features)
            cands.append(cons)
            best = int(np.argmax([c.rank for c in cands]))
    return HybridResult(cands, best, time.monotonic() - t0)


#: the hand model a centred solution's hand is read off (models/): the Cα chirality of atoms fitted to the map
#: for 2-5 residues, otherwise the mean of the gated and linear cards' logits (fragment_hand_ensemble), which
#: called more train-family winners right than the gated card alone (benchmarks/hand_pipeline_dev.py, BENCHMARKS 9f)
HAND_MODEL = "fragment_phasing_hand"
#: confidence from which a hand call is reported as sure (held-out test maps, the gated card: 99.5-100 % of such
#: calls right at 0-35° phase error, BENCHMARKS 9d)
SURE_HAND = 0.9


@dataclass
class HandChoice:
    """A hand model's call on a solution: the model, inverted or kept, its logit and confidence (P right)."""

    model: str
    inverted: bool
    logit: float
    confidence: float


def choose_solution_hand(refined: RefineResult, hand_model: str = HAND_MODEL,
                         sequence: Sequence | str | None = None) -> HandChoice:
    """Put a (centred) solution on the L-amino-acid hand with ``hand_model``, in place of its map (inverted
    through the cell centre when the model reads D-amino acids).  The call is meaningful only for a solved map.
    ``sequence``: the fragment's, for a hand model that reads it (``hand-atoms``)."""
    rho = np.asarray(refined.map.array, dtype=np.float64)
    logit = float(hand_logits(rho[None], hand_model, cells=refined.map.cell,
                              sequences=None if sequence is None else [sequence])[0])
    if logit > 0:
        refined.map = CrystalMap.from_array(invert_grid(rho).astype(np.float32), refined.map.cell,
                                            refined.map.spacegroup, name=refined.map.name, units="e/Å³")
    return HandChoice(hand_model, logit > 0, logit, hand_confidence(logit))


def place(refined: RefineResult, hand_model: str | None = HAND_MODEL, sequence: Sequence | str | None = None
          ) -> tuple[str, HandChoice | None]:
    """Put a solution (origin and hand arbitrary) where users expect it, in place; returns (how, hand call).

    Its fragment is centred (:func:`crysplugins.crystal.maps.centre_density`: the training data put the
    centre of mass at the cell centre, paper 000 appendix B) and ``hand_model`` (None: none) reads the hand
    off the solution's own map (:func:`choose_solution_hand`, which reads ``sequence`` if the model needs it).
    The winner's map, density-modified from the best start, is a better map to read than the transformer's
    prediction: taking the origin and hand of that prediction put 104 of 383 solved held-out fragments on the
    wrong hand, mostly where the transformer itself had failed (BENCHMARKS 15).  The phases move with the map
    exactly (a translation t adds 360° h·t, the inversion negates them) instead of being read back from the
    moved map, which holds no reflection whose figure of merit is 0.
    """
    cmap = refined.map
    rho, shift = centre_density(np.asarray(cmap.array, dtype=np.float64), cell=cmap.cell)
    phases = np.asarray(refined.phases, dtype=np.float64) + np.degrees(phase_shift(refined.hkl, shift))
    refined.map = CrystalMap.from_array(rho.astype(np.float32), cmap.cell, cmap.spacegroup, name=cmap.name,
                                        units="e/Å³")
    how, hand = "centred (hand arbitrary)", None
    if hand_model:
        hand = choose_solution_hand(refined, hand_model, sequence)
        phases = -phases if hand.inverted else phases
        sure = "" if hand.confidence >= SURE_HAND else ", an uncertain call"
        how = (f"centred; hand chosen by {hand.model}: {'inverted' if hand.inverted else 'kept'} "
               f"(confidence {hand.confidence:.2f}{sure}; meaningful for a solved map)")
    refined.phases = (phases + 180.0) % 360.0 - 180.0
    return how, hand
