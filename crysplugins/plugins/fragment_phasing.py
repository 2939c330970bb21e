"""Built-in plugin ``fragment-phasing``: charge flipping and the transformer as candidates, one amplitude-only score.

Candidates (:mod:`crysplugins.runtime.fragment_phasing`): every charge-flipping start after density
modification and, when the built-in ``patterson-density`` predictor takes the input (a model covers the
fragment's length and resolution), its prediction after density modification and charge flipping started
from it.  Each is scored by :mod:`crysplugins.crystal.solution_score` (amplitudes and sequence only; the
probability that the origin/hand-invariant phase error is below 60°) and the best ranked one (highest
density-modification CC, see :mod:`crysplugins.runtime.fragment_phasing`) is returned with every
candidate's score.  Origin and hand are arbitrary (P1).  numpy + gemmi only here.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from crysplugins.crystal.refine import observed_data
from crysplugins.errors import CrysError
from crysplugins.examples import fragment_example
from crysplugins.hookspecs import hookimpl
from crysplugins.interface import InputSpec, Kind, OutputSpec, Prediction, Request, Scalar, Table
from crysplugins.plugins.patterson_density import PattersonDensityPredictor
from crysplugins.runtime import fragment_phasing as fp

NETWORK = "patterson-density"


class FragmentPhasingPredictor:
    """Hybrid ab initio phasing of small P1 fragment crystals: the best of several candidates."""

    name = "fragment-phasing"
    version = "1.0.0"
    summary = ("Charge flipping and the patterson-density transformer as candidates, density-modified and "
               "ranked by an amplitude-only score; returns the best (P1; origin and hand arbitrary).")
    origin_arbitrary = True
    inputs = (
        InputSpec("mtz", Kind.REFLECTIONS, "MTZ with amplitudes F (or intensities I); P1 expected",
                  required=True, columns=("F|I",)),
        InputSpec("sequence", Kind.SEQUENCE, "sequence of the fragment (envelope, atom count, the network)"),
        InputSpec("solvent_fraction", Kind.FLOAT, "solvent fraction of the cell (instead of the sequence)",
                  minimum=0.01, maximum=0.99),
        InputSpec("network", Kind.CHOICE, "use patterson-density's prediction as a candidate when its model "
                  "covers the input", default="auto", choices=("auto", "no")),
        InputSpec("starts", Kind.INT, "charge-flipping starts (at most)", default=8, minimum=1, maximum=200),
        InputSpec("dm_cycles", Kind.INT, "density-modification cycles per candidate", default=200, minimum=1,
                  maximum=10000),
        InputSpec("seed", Kind.INT, "random seed of the starts", default=0, minimum=0),
    )
    outputs = (
        OutputSpec("density", Kind.MAP, "density map of the best candidate (origin and hand arbitrary)", unit="e/Å³"),
        OutputSpec("phases", Kind.REFLECTIONS, "MTZ with F, PHI (degrees), FOM of the best candidate"),
        OutputSpec("score", Kind.SCALAR, "the winner's probability of an invariant phase error < 60°"),
        OutputSpec("dm_score", Kind.SCALAR, "CC of |F| of the winner's density-modified map with |F_obs|"),
        OutputSpec("candidates", Kind.TABLE, "every candidate: name, features, probability, time"),
    )

    def example_inputs(self) -> dict:
        """The shipped held-out test dipeptide (amplitudes MTZ + sequence)."""
        example = fragment_example()
        return {"mtz": example["reflections"], "sequence": example["sequence"]}

    def predict(self, request: Request) -> Prediction:
        refl = request.require("mtz")
        messages: list[str] = []
        cell, hkl, f = observed_data(refl, messages)
        if len(f) < 10:
            raise CrysError(f"The MTZ holds only {len(f)} usable reflections; charge flipping needs at least 10.")
        sequence, solvent = request.get("sequence"), request.get("solvent_fraction")
        if sequence is None and solvent is None:
            solvent = 0.5
            messages.append("No sequence or solvent fraction given: the envelope assumes 50 % solvent.")
        setup = fp.make_setup(cell, hkl, f, sequence if solvent is None else None, solvent)
        network = None
        if request.get("network", "auto") == "auto":
            def network() -> np.ndarray | None:  # run only if the first charge-flipping start is not enough
                return self._network_phases(request, refl, sequence, hkl, messages)
        result = fp.solve(setup, network, n_starts=int(request.get("starts", 8)),
                          dm_cycles=int(request.get("dm_cycles", 200)), seed=int(request.get("seed", 0)),
                          progress=request.report, check=request.check_cancelled)
        win = result.winner
        placed, hand = fp.place(win.refined, sequence=sequence)
        win.refined.map.name = "density"
        messages.append(f"Best of {len(result.candidates)} candidates: {win.name}, P(right) {win.probability:.2f} "
                        f"(DM CC {win.refined.score:.4f}); placed: {placed}.")
        return Prediction(
            maps={"density": win.refined.map},
            reflections={"phases": win.refined.reflections("phases")},
            scalars={"score": Scalar(win.probability, "", "P(invariant phase error < 60°), amplitudes only"),
                     "dm_score": Scalar(win.refined.score, "", "CC of |F_mod| with |F_obs|")},
            tables={"candidates": candidate_table(result)},
            messages=messages,
            meta={"origin_arbitrary": True, "winner": win.name, "refined": win.probability >= 0.5,
                  "seconds": round(result.seconds, 3),
                  **({} if hand is None else {"hand_model": hand.model, "hand_inverted": hand.inverted,
                                              "hand_logit": hand.logit, "hand_confidence": hand.confidence})},
        )

    @staticmethod
    def _network_phases(request: Request, refl: Any, sequence: Any, hkl: np.ndarray,
                        messages: list[str]) -> np.ndarray | None:
        """The built-in patterson-density's phases (degrees) at ``hkl`` (its whole pipeline, with the
        request's refiners), or None with a message when its models do not cover the input."""
        if sequence is None:
            messages.append(f"{NETWORK} needs the sequence: charge flipping only.")
            return None
        try:
            pred = PattersonDensityPredictor().predict(  # the hand is read off the winner's map instead
                Request({"reflections": refl, "sequence": sequence, "hand": "none"}, refiners=request.refiners))
        except CrysError as exc:
            messages.append(f"{NETWORK} skipped: {exc}")
            return None
        phases = fp.prediction_phases(pred, hkl)
        if phases is None:
            messages.append(f"{NETWORK} returned no phases for these reflections: charge flipping only.")
        return phases


def candidate_table(result: fp.HybridResult) -> Table:
    """One row per candidate, the winner marked."""
    keys = ("dm_log", "agreement", "dm_gain")
    rows = [[c.name, round(c.refined.score, 5), *[round(c.features.get(k, float("nan")), 4) for k in keys],
             round(c.probability, 4), round(c.seconds, 2), i == result.best] for i, c in enumerate(result.candidates)]
    return Table(["candidate", "dm_cc", *keys, "probability", "seconds", "winner"], rows,
                 "every candidate after density modification; features and probability use amplitudes only")


@hookimpl
def register_predictors(register: Callable[[Any], None]) -> None:
    register(FragmentPhasingPredictor())
