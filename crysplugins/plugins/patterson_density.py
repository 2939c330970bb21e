"""Built-in plugin ``patterson-density``: RecCrysFormer (paper 000) Patterson map + sequence -> density.

The work is :class:`crysplugins.runtime.reccrysformer.RecCrysFormerPipeline` (predict → recycle → density
modification → hand → place) with the host's refiner; this module declares inputs and outputs and turns the
result into a Prediction.  A Patterson map does not fix the origin (``origin_arbitrary``).
"""
from __future__ import annotations

from typing import Any, Callable

from crysplugins.crystal.maps import invert_grid
from crysplugins.errors import CrysError
from crysplugins.examples import fragment_example
from crysplugins.hookspecs import hookimpl
from crysplugins.interface import InputSpec, Kind, ObservedAmplitudes, OutputSpec, Prediction, Request, Scalar
from crysplugins.plugins.refiners import refiner_for
from crysplugins.runtime.hand import hand_accuracy_note
from crysplugins.runtime.models import find_card
from crysplugins.runtime.reccrysformer import (PipelineResult, RecCrysFormerPipeline, describe_shift, model_for,
                                               phased_reflections)
from crysplugins.runtime.recycle import CycleRecord

DEFAULT_MODEL = "reccrysformer_dipeptide"


class PattersonDensityPredictor:
    """Electron density of a small P1 fragment from its Patterson map and sequence (RecCrysFormer)."""

    name = "patterson-density"
    version = "1.0.0"
    summary = ("Electron density of a short peptide fragment in P1 from its Patterson map and sequence "
               "(RecCrysFormer transformer, ONNX).")
    origin_arbitrary = True
    inputs = (
        InputSpec("reflections", Kind.REFLECTIONS, "observed amplitudes F (or intensities I) in P1",
                  columns=("F?", "SIGF?", "I?"), group="data"),
        InputSpec("patterson", Kind.MAP, "a Patterson map of the P1 cell (instead of reflections)", group="data"),
        InputSpec("sequence", Kind.SEQUENCE, "sequence of the fragment (one-letter string or FASTA file)",
                  required=True),
        InputSpec("model", Kind.TEXT, "model name (a card in the package's models or $CRYSPLUGINS_MODELS); "
                  "when not given, the installed model that covers the sequence length and resolution"),
        InputSpec("cycles", Kind.INT, "recycling cycles: refine, make a template, predict again with the "
                  "recycled model (paper 000, section 4; needs reflections); when not given, the model card's "
                  "default_cycles with reflections, else 0", minimum=0, maximum=20),
        InputSpec("dm_cycles", Kind.INT, "density-modification cycles per recycling refinement", default=50,
                  minimum=1, maximum=10000),
        InputSpec("final_dm_cycles", Kind.INT, "density-modification cycles on the last recycled prediction, the "
                  "map the hand model reads and the 'refined' output; 0 reuses the last recycling refinement; "
                  "when not given, the model card's final_dm_cycles", minimum=0, maximum=10000),
        InputSpec("output", Kind.CHOICE, "what 'density' holds after recycling: the density-modified map of the "
                  "last prediction ('refined') or the network's prediction itself ('prediction'); when not "
                  "given, the model card's default_output", choices=("refined", "prediction")),
        InputSpec("hand", Kind.CHOICE, "'card': the model card's hand model puts the map on the L-amino-acid hand; "
                  "'none': the hand as predicted (either hand; for a caller that reads the hand off another map)",
                  default="card", choices=("card", "none")),
    )
    outputs = (
        OutputSpec("density", Kind.MAP, "predicted electron density", unit="e/Å³"),
        OutputSpec("density_other_hand", Kind.MAP, "the predicted density inverted through the cell centre: the "
                   "hand the hand model rejected, to check its call (only when a hand model chose)", unit="e/Å³"),
        OutputSpec("density_prediction", Kind.MAP, "the recycled network's own prediction (hand and centring "
                   "applied), when 'density' holds the refined map", unit="e/Å³"),
        OutputSpec("phases", Kind.REFLECTIONS, "observed amplitudes with the phases of the predicted density"),
        OutputSpec("recycling", Kind.TABLE, "per recycling cycle: model, template, refinement score (CC), refined"),
    )

    def model_card(self) -> dict | None:
        try:
            return find_card(DEFAULT_MODEL).data
        except CrysError:
            return None

    def example_inputs(self) -> dict[str, Any]:
        """The shipped held-out test dipeptide: amplitudes MTZ + sequence (crysplugins/data/examples)."""
        example = fragment_example()
        return {"reflections": example["reflections"], "sequence": example["sequence"]}

    def run_pipeline(self, request: Request, on_cycle: Callable[[CycleRecord], None] | None = None
                     ) -> tuple[RecCrysFormerPipeline, PipelineResult]:
        """The pipeline of the requested model and its result, with every intermediate."""
        refl, pmap = request.get("reflections"), request.get("patterson")
        observed = ObservedAmplitudes.from_reflections(refl) if refl is not None else None
        sequence = request.require("sequence")
        d_min = float(observed.d().min()) if observed is not None and len(observed) else None
        cell = observed.cell if observed is not None else getattr(pmap, "cell", None)
        pipeline = RecCrysFormerPipeline(request.get("model") or model_for(len(sequence), d_min, cell))
        request.report(0.05, "model loaded")
        settings = pipeline.settings(request.get("cycles"), request.get("dm_cycles"),
                                     request.get("final_dm_cycles"), request.get("output"), refl is not None,
                                     hand=request.get("hand", "card") != "none")
        if settings.cycles > 0 or (refl is not None and settings.final_dm_cycles > 0):
            pipeline.refiner = refiner_for(request, pipeline.refiner_name)
        return pipeline, pipeline.run(sequence, observed, pmap, settings, on_cycle,
                                      progress=request.report)

    def predict(self, request: Request) -> Prediction:
        pred = self.to_prediction(self.run_pipeline(request)[1])
        request.report(1.0, "done")
        return pred

    @staticmethod
    def to_prediction(result: PipelineResult) -> Prediction:
        """The pipeline's result as maps, table, messages and metadata."""
        s, messages, dens = result.settings, list(result.messages), result.output
        maps = {"density": result.as_map(dens, "density")}
        if dens is result.refined_density:
            maps["density_prediction"] = result.as_map(result.density, "density_prediction")
            n = s.final_dm_cycles or s.dm_cycles
            messages.append(f"'density' is the density-modified map of the last prediction ({n} cycles, |F_obs| and "
                            f"refined phases), centred the same way (moved by {describe_shift(result.refined_shift)});"
                            " the network's own map is 'density_prediction'.")
        if result.hand.model:  # a hand call can be wrong: give the rejected hand too
            maps["density_other_hand"] = result.as_map(invert_grid(dens), "density_other_hand")
            messages.append("The rejected hand is in 'density_other_hand'; check which map holds L-amino acids"
                            + hand_accuracy_note(result.hand.model) + ".")
        pred = Prediction(maps=maps, messages=messages, meta=result.meta())
        if result.observed is not None:
            pred.reflections["phases"] = phased_reflections(result.observed, dens)
        pred.scalars["density_rms"] = Scalar(float(dens.std()), "e/Å³", "rms of the predicted density")
        if result.recycling is not None:
            pred.tables["recycling"] = result.recycling.table()
        return pred


@hookimpl
def register_predictors(register: Callable[[Any], None]) -> None:
    register(PattersonDensityPredictor())
