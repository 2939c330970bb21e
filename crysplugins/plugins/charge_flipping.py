"""Built-in plugin: ab initio phasing of P1 fragment crystals by charge flipping (predictor ``charge-flipping``).

Input: an MTZ with amplitudes (or intensities) — P1; other space groups are expanded to P1 with a
message — and, optionally, the sequence (it sizes the solvent envelope of the density-modification
step; without it a solvent fraction may be given, else 50 % is assumed and said so).  Output: the
density map (|F_obs|·exp(iφ) synthesis, e/Å³ on the observed scale) and an MTZ with F, PHI, FOM.

The algorithm lives in :mod:`crysplugins.crystal.charge_flipping` (Oszlányi–Sütő charge flipping on
normalised amplitudes, several random starts ranked with amplitudes only, then the shared
density-modification refiner of :mod:`crysplugins.crystal.refine`).  The solution's origin and hand
are arbitrary (P1): ``origin_arbitrary = True`` tells evaluators to search both before comparing.
numpy + gemmi only; no external programs.
"""
from __future__ import annotations

import numpy as np

from crysplugins.crystal import charge_flipping as cf
from crysplugins.crystal.fourier import stol2
from crysplugins.crystal.refine import observed_data
from crysplugins.errors import CrysError
from crysplugins.examples import fragment_example
from crysplugins.hookspecs import hookimpl
from crysplugins.interface import (InputSpec, Kind, OutputSpec, Prediction, Request, Scalar, Table)


#: cells larger than this (Å³) are protein crystals, not the fragments charge flipping here is made for
LARGE_CELL_A3 = 20000.0


class ChargeFlippingPredictor:
    """Charge flipping + density modification for small P1 crystals (peptide fragments, high solvent)."""

    name = "charge-flipping"
    version = "1.0.0"
    summary = ("Classical ab initio phasing of small P1 fragment crystals (cells of a few thousand Å³): charge "
               "flipping on E-values from random starts, then solvent flattening against the observed amplitudes "
               "(origin and hand arbitrary).")
    origin_arbitrary = True
    inputs = (
        InputSpec("mtz", Kind.REFLECTIONS, "MTZ with amplitudes F (or intensities I); P1 expected",
                  required=True, columns=("F|I",)),
        InputSpec("sequence", Kind.SEQUENCE, "sequence of the fragment (sizes the solvent envelope)"),
        InputSpec("solvent_fraction", Kind.FLOAT, "solvent fraction of the cell (instead of the sequence)",
                  minimum=0.01, maximum=0.99),
        InputSpec("d_min", Kind.FLOAT, "use reflections to this resolution only (default: all)", unit="Å",
                  minimum=0.3, maximum=20.0),
        InputSpec("starts", Kind.INT, "number of random starts", default=8, minimum=1, maximum=200),
        InputSpec("flip_cycles", Kind.INT, "charge-flipping cycles per start (at most)", default=1000, minimum=10,
                  maximum=100000),
        InputSpec("dm_cycles", Kind.INT, "density-modification cycles of the chosen start", default=200,
                  minimum=1, maximum=10000),
        InputSpec("seed", Kind.INT, "random seed of the starts", default=0, minimum=0),
    )
    outputs = (
        OutputSpec("density", Kind.MAP, "density map of the solution (origin and hand arbitrary)", unit="e/Å³"),
        OutputSpec("phases", Kind.REFLECTIONS, "MTZ with F, PHI (degrees), FOM of the solution"),
        OutputSpec("dm_score", Kind.SCALAR, "CC of |F| of the density-modified map with |F_obs|"),
        OutputSpec("solvent_fraction", Kind.SCALAR, "solvent fraction used for the envelope"),
        OutputSpec("starts", Kind.TABLE, "figure of merit of every start (amplitudes only)"),
    )

    def example_inputs(self) -> dict:
        """The shipped held-out test dipeptide (amplitudes MTZ + sequence), the same as patterson-density's."""
        example = fragment_example()
        return {"mtz": example["reflections"], "sequence": example["sequence"]}

    def predict(self, request: Request) -> Prediction:
        refl = request.require("mtz")
        messages: list[str] = []  # column choices are reported by the caller (Reflections.notes)
        cell, hkl, f = observed_data(refl, messages)
        d_min = request.get("d_min")
        if d_min is not None:
            keep = 1.0 / np.sqrt(4.0 * stol2(cell, hkl)) >= float(d_min) - 1e-6
            hkl, f = hkl[keep], f[keep]
            if len(f) < 10:
                raise CrysError(f"Fewer than 10 reflections remain at {d_min} Å.")
        sequence = request.get("sequence")
        solvent = request.get("solvent_fraction")
        if sequence is None and solvent is None:
            solvent = 0.5
            messages.append("No sequence or solvent fraction given: the envelope assumes 50 % solvent.")
        if cell.volume > LARGE_CELL_A3:  # a protein crystal: hours of cycles that will not phase it
            messages.append(f"Charge flipping is meant for small P1 fragment cells (up to about {LARGE_CELL_A3:,.0f} "
                            f"Å³); this cell is {cell.volume:,.0f} Å³, so the run is long and unlikely to phase it.")
            request.report(0.0, messages[-1])
        request.report(0.0, "charge flipping")
        result = cf.solve(cell, hkl, f, sequence=sequence if solvent is None else None,
                          solvent_fraction=solvent, n_starts=int(request.get("starts", 8)),
                          flip_cycles=int(request.get("flip_cycles", 1000)),
                          dm_cycles=int(request.get("dm_cycles", 200)), seed=int(request.get("seed", 0)),
                          progress=request.report, check=request.check_cancelled)
        ref = result.refined
        ref.map.name = "density"
        refined_word = "refined" if ref.refined else "not refined"
        n_starts, ran = int(request.get("starts", 8)), len(result.starts)
        stopped = (f"{ran} of up to {n_starts} random starts run (the search stops at the first whose "
                   f"density-modification CC reaches the stop score)" if ran < n_starts else f"{ran} random starts run")
        messages.append(f"Chosen start {result.chosen} (numbered from 0); {stopped}; density-modification CC "
                        f"{ref.score:.4f} ({refined_word}); origin and hand are arbitrary (P1).")
        rows = [[s["start"], s["delta"], s["r_factor"], s["flip_cycles"], s["screen_score"],
                 s["dm_score"] if s["dm_score"] is not None else float("nan")] for s in result.starts]
        return Prediction(
            maps={"density": ref.map},
            reflections={"phases": ref.reflections("phases")},
            scalars={"dm_score": Scalar(ref.score, "", "CC of |F_mod| with |F_obs| (>= %.3f: refined)"
                                        % ref.info["refined_threshold"]),
                     "solvent_fraction": Scalar(ref.info["solvent_fraction"], "", "fraction of the cell")},
            tables={"starts": Table(["start", "delta_sigma", "r_factor", "flip_cycles", "dm_screen_cc", "dm_cc"], rows,
                                    "charge-flipping starts; R and CC use amplitudes only")},
            messages=messages,
            meta={"origin_arbitrary": True, "chosen_start": result.chosen, "refined": ref.refined,
                  "seconds": round(result.seconds, 3), "history": ref.history[-1:]},
        )


@hookimpl
def register_predictors(register):  # type: ignore[no-untyped-def]
    register(ChargeFlippingPredictor())
