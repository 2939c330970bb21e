"""Built-in plugin: the classical local-variance solvent mask (predictor ``solvent-mask-local-variance``).

Abrahams & Leslie (1996), as in DM and Parrot: the local standard deviation of the phasing map in a
cone-weighted sphere (radius from the resolution and mean figure of merit, see
:func:`crysplugins.crystal.masks.local_variance_radius`), the given fraction of the cell with the lowest
local deviation marked solvent.  The baseline the U-net (``solvent-mask``) is compared with.  Same inputs
(map or MTZ with phases) and the same Shannon grid; the solvent fraction is required (a classical program
takes it from Matthews, e.g. the ``solvent-content`` predictor).
"""
from __future__ import annotations

from dataclasses import replace

from crysplugins.crystal.masks import local_std, local_variance_radius
from crysplugins.errors import CrysError
from crysplugins.examples import phasing_map_example, phasing_map_solvent_fraction
from crysplugins.hookspecs import hookimpl
from crysplugins.interface import InputSpec, Kind, OutputSpec, Prediction, Request, Scalar
from crysplugins.plugins.solvent_mask import DATA_INPUTS, load_phasing_input
from crysplugins.runtime.solvent_unet import finish_mask


class LocalVarianceMaskPredictor:
    """Abrahams & Leslie (1996) local-variance solvent mask."""

    name = "solvent-mask-local-variance"
    version = "1.0.0"
    summary = "Classical solvent mask from the local variance of a phasing map (Abrahams & Leslie 1996)."
    inputs = tuple(replace(s, required=True, help=s.help + " (required)") if s.name == "solvent_fraction" else s
                   for s in DATA_INPUTS) + (
        InputSpec("radius", Kind.FLOAT, "radius of the averaging sphere (default from resolution and FOM)",
                  unit="Å", minimum=1.0, maximum=20.0),
    )
    outputs = (
        OutputSpec("solvent_score", Kind.MAP, "minus the local standard deviation (higher = more solvent-like)"),
        OutputSpec("mask", Kind.MASK, "binary solvent mask (solvent = 1)"),
        OutputSpec("radius", Kind.SCALAR, "radius of the averaging sphere", unit="Å"),
    )

    def example_inputs(self) -> dict:
        """PDB 1RX4 (P 21 21 21, 2.2 Å) 2mFo-DFc map coefficients shipped in the package, Matthews solvent fraction."""
        return {"reflections": phasing_map_example(), "solvent_fraction": phasing_map_solvent_fraction()}

    def predict(self, request: Request) -> Prediction:
        fraction = request.get("solvent_fraction")
        if fraction is None:
            raise CrysError("solvent-mask-local-variance needs --solvent-fraction (e.g. from solvent-content).")
        pin = load_phasing_input(request)
        request.report(0.2, "map on the Shannon grid")
        radius = request.get("radius") or local_variance_radius(pin.d_min, pin.mean_fom)
        score = -local_std(pin.map, float(radius))
        request.report(0.8, "local variance")
        score_map, mask = finish_mask(pin, score, float(fraction), ("local-variance-score", "solvent-mask"),
                                      units="-local sd")
        request.report(1.0, "done")
        return Prediction(maps={"solvent_score": score_map, "mask": mask},
                          scalars={"radius": Scalar(float(radius), "Å", "averaging sphere radius")},
                          messages=list(pin.messages) + [f"local-variance sphere radius {radius:.2f} Å"],
                          meta={"d_min": pin.d_min, "grid": list(pin.map.shape),
                                "reference": "Abrahams & Leslie (1996) Acta Cryst. D52, 30-42"})


@hookimpl
def register_predictors(register):  # type: ignore[no-untyped-def]
    register(LocalVarianceMaskPredictor())
