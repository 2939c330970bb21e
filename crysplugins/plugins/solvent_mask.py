"""Built-in plugin: protein/solvent segmentation of a phasing map by the U-net (predictor ``solvent-mask``).

Skubák (2024), sections 2.1-2.3.  Input: a CCP4 map, or an MTZ with amplitudes, phases and (optionally) a
figure of merit, in any space group; the U-net runs over the whole cell (:mod:`crysplugins.runtime.solvent_unet`).
Outputs: the solvent-probability map, a binary mask (solvent = 1) at the given solvent fraction or, when
none is given, at the expected solvent content <S_s> of eq. 1, and <S_s> itself.
"""
from __future__ import annotations

from typing import Any, Callable

from crysplugins.crystal.phasing_input import PhasingInput, from_map, from_reflections
from crysplugins.crystal.solvent_content_combination import expected_solvent_content
from crysplugins.errors import CrysError
from crysplugins.examples import phasing_map_example
from crysplugins.hookspecs import hookimpl
from crysplugins.interface import InputSpec, Kind, OutputSpec, Prediction, Predictor, Request, Scalar
from crysplugins.runtime.solvent_unet import (MODEL_NAME, finish_mask, load_solvent_model, solvent_probability,
                                              symmetry_averaged)

#: Inputs shared by the two mask predictors.
DATA_INPUTS = (
    InputSpec("map", Kind.MAP, "phasing map (CCP4/MRC, whole cell)", group="data"),
    InputSpec("reflections", Kind.REFLECTIONS, "MTZ with amplitudes, phases and optionally FOM",
              columns=("F", "PHI", "FOM?"), group="data"),
    InputSpec("resolution", Kind.FLOAT, "high-resolution limit of the map (default: from the MTZ, or 3 x the "
              "map's grid spacing)", unit="Å", minimum=0.3, maximum=20.0),
    InputSpec("solvent_fraction", Kind.FLOAT, "fraction of the cell to mark as solvent", minimum=0.01,
              maximum=0.99),
)


def load_phasing_input(request: Request) -> PhasingInput:
    """The Shannon-grid map for a mask request (map or reflections)."""
    cmap = request.get("map")
    refl = request.get("reflections")
    d_min = request.get("resolution")
    if cmap is not None and refl is not None:
        raise CrysError("Give either --map or --reflections, not both.")
    if refl is not None:
        return from_reflections(refl, d_min)
    if cmap is None:
        raise CrysError("A solvent mask needs a map or reflections with phases.")
    if d_min is None:  # a map made from an MTZ knows the data's resolution
        d_min = getattr(cmap, "d_min", None)
    return from_map(cmap, d_min)


class SolventMaskPredictor:
    """U-net protein/solvent segmentation of an experimental phasing map (Skubák 2024)."""

    name = "solvent-mask"
    version = "1.0.0"
    summary = "Solvent probability and mask of a phasing map by a 3D U-net (Skubák 2024), whole cell, symmetry-averaged."
    inputs = DATA_INPUTS + (
        InputSpec("overlap", Kind.INT, "overlap of neighbouring 48³ tiles", unit="voxels", default=16,
                  minimum=0, maximum=40),
    )
    outputs = (
        OutputSpec("solvent_probability", Kind.MAP, "probability that each grid point is solvent"),
        OutputSpec("mask", Kind.MASK, "binary solvent mask (solvent = 1)"),
        OutputSpec("expected_solvent_fraction", Kind.SCALAR, "<S_s>, the mean solvent probability (eq. 1)"),
        OutputSpec("solvent_fraction", Kind.SCALAR, "fraction of the cell marked solvent in the mask"),
    )

    def __init__(self, model_name: str = MODEL_NAME) -> None:
        self.model_name = model_name
        self._loaded: tuple[Any, dict] | None = None

    def _model(self) -> tuple[Any, dict]:
        if self._loaded is None:
            self._loaded = load_solvent_model(self.model_name)
        return self._loaded

    def model_card(self) -> dict | None:
        try:
            return self._model()[1]
        except CrysError:
            return None

    def example_inputs(self) -> dict:
        """PDB 1RX4 (P 21 21 21, 2.2 Å) 2mFo-DFc map coefficients shipped in the package."""
        return {"reflections": phasing_map_example()}

    def predict(self, request: Request) -> Prediction:
        pin = load_phasing_input(request)
        request.report(0.05, "map on the Shannon grid")
        runner, card = self._model()
        overlap = request.get("overlap")
        prob = solvent_probability(pin.map, runner, card, overlap,
                                   progress=lambda f, m: request.report(0.05 + 0.85 * f, m))
        expected = expected_solvent_content(symmetry_averaged(pin.map, prob))
        fraction = request.get("solvent_fraction")
        messages = list(pin.messages)
        if fraction is None:
            fraction = expected
            messages.append(f"no solvent fraction given: mask at the expected solvent content {expected:.3f} (eq. 1)")
        score, mask = finish_mask(pin, prob, float(fraction), ("solvent-probability", "solvent-mask"))
        request.report(1.0, "done")
        return Prediction(
            maps={"solvent_probability": score, "mask": mask},
            scalars={"expected_solvent_fraction": Scalar(expected, "", "mean P(solvent) over the cell (eq. 1)"),
                     "solvent_fraction": Scalar(float(mask.array.mean()), "", "fraction marked solvent")},
            messages=messages,
            meta={"model": card.get("name", self.model_name), "d_min": pin.d_min, "grid": list(pin.map.shape),
                  "reference": "Skubák (2024) Acta Cryst. D, deep-learning map segmentation"},
        )


@hookimpl
def register_predictors(register: Callable[[Predictor], None]) -> None:
    register(SolventMaskPredictor())
