"""Built-in plugin: protein/solvent segmentation of a phasing map by the U-net (predictor ``solvent-mask``).

Skubák (2024), sections 2.1-2.3.  Input: a CCP4 map, or an MTZ with amplitudes, phases and (optionally) a
figure of merit, in any space group.  The map is put on the Shannon grid of its resolution
(:mod:`crysplugins.crystal.phasing_input`), normalised as the model card says (zero mean, unit standard
deviation over the cell), cut into overlapping periodic 48³ tiles covering the whole cell
(:mod:`crysplugins.runtime.tiling`), run through the ONNX U-net with onnxruntime, and the per-voxel
solvent probabilities are blended, averaged over symmetry mates (gemmi ``symmetrize_avg``, so the result
respects the space group) and brought back to the input grid.

Outputs: the solvent-probability map, a binary mask (solvent = 1) at the given solvent fraction or, when
none is given, at the expected solvent content <S_s> of eq. 1, and <S_s> itself.

No torch: the model runs in onnxruntime.  Registered through ``register_predictors`` like any plugin.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from crysplugins.crystal.masks import threshold_fraction
from crysplugins.crystal.phasing_input import PhasingInput, from_map, from_reflections, resample_periodic
from crysplugins.crystal.solvent_content_combination import expected_solvent_content
from crysplugins.errors import CrysError
from crysplugins.hookspecs import hookimpl
from crysplugins.interface import (CrystalMap, InputSpec, Kind, OutputSpec, Prediction, Request, Scalar)
from crysplugins.runtime.tiling import predict_tiled, with_flips

MODEL_NAME = "solvent-unet"

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
        raise CrysError("Give either a map or reflections, not both.")
    if refl is not None:
        return from_reflections(refl, d_min)
    if cmap is None:
        raise CrysError("A solvent mask needs a map or reflections with phases.")
    return from_map(cmap, d_min)


def finish_mask(pin: PhasingInput, prob: np.ndarray, fraction: float, names: tuple[str, str],
                units: str = "P(solvent)") -> tuple[CrystalMap, CrystalMap]:
    """Symmetry-average a score map on the Shannon grid, bring it to the output grid and threshold it."""
    src = pin.map
    score = CrystalMap.from_array(prob.astype(np.float32), src.cell, src.spacegroup, name=names[0], units=units)
    if src.spacegroup is not None and src.spacegroup.number != 1:
        score.grid.symmetrize_avg()
    out_grid = pin.target or src
    if out_grid is not src:
        arr = resample_periodic(score.array, out_grid.shape)
        score = CrystalMap.from_array(arr, out_grid.cell, out_grid.spacegroup, name=names[0], units=units)
        if out_grid.spacegroup is not None and out_grid.spacegroup.number != 1:
            try:  # interpolation of a symmetric map is symmetric only up to rounding on sheared grids
                score.grid.symmetrize_avg()
            except Exception:  # noqa: BLE001 - a grid that does not fit the space group stays as is
                pass
    arr = score.array
    mask = CrystalMap.from_array(threshold_fraction(arr, fraction), out_grid.cell, out_grid.spacegroup,
                                 name=names[1], units="solvent=1")
    return score, mask


# ----------------------------------------------------------------------------------------- the model

def load_solvent_model(name: str = MODEL_NAME) -> tuple[Any, dict]:
    """(onnxruntime session, card as a dict) of the solvent U-net via :mod:`crysplugins.runtime.models`."""
    from crysplugins.runtime.models import load_model

    session, card = load_model(name)
    return session, (card.data if hasattr(card, "data") else dict(card))


def _softmax_solvent(logits: np.ndarray) -> np.ndarray:
    """Two-class logits (b, 2, ...) -> (b, 1, ...) probability of class 1 (solvent)."""
    return (1.0 / (1.0 + np.exp(logits[:, :1] - logits[:, 1:2]))).astype(np.float32)


def solvent_probability(cmap: CrystalMap, session: Any, card: dict, overlap: int | None = None,
                        progress=None, views: int | None = None) -> np.ndarray:
    """Per-voxel P(solvent) on ``cmap``'s grid from the U-net (tiled over the whole cell).

    ``views``: test-time augmentation, the number of mirror views averaged per tile (1-8,
    :func:`crysplugins.runtime.tiling.with_flips`); default the card's ``tiling.views`` or 1."""
    inp = card.get("input", {})
    window = int(inp.get("window", 48))
    norm = inp.get("normalisation", "zscore-cell")
    if norm != "zscore-cell":
        raise CrysError(f"The model card asks for an input normalisation this version does not know: {norm}.")
    arr = np.asarray(cmap.array, dtype=np.float32)
    arr = (arr - float(arr.mean())) / max(float(arr.std()), 1e-12)
    in_name = session.get_inputs()[0].name
    overlap = int(card.get("tiling", {}).get("overlap", 16) if overlap is None else overlap)
    views = int(card.get("tiling", {}).get("views", 1) if views is None else views)
    predict = with_flips(lambda x: _softmax_solvent(session.run(None, {in_name: x})[0]), views)
    out = predict_tiled(arr, predict, window=window,
                        overlap=overlap, batch_size=int(card.get("tiling", {}).get("batch", 2)), progress=progress)
    return out[0]


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
        from crysplugins.examples import phasing_map_example

        return {"reflections": phasing_map_example()}

    def predict(self, request: Request) -> Prediction:
        pin = load_phasing_input(request)
        request.report(0.05, "map on the Shannon grid")
        session, card = self._model()
        overlap = request.get("overlap")
        prob = solvent_probability(pin.map, session, card, overlap,
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


def unet_solvent_content(cmap: CrystalMap, matthews_s: list[float], matthews_p: list[float],
                         d_min: float | None = None, model_name: str = MODEL_NAME, progress=None):
    """Eq. 1 and eq. 2 (Skubák 2024, section 2.3) for a phasing map and Matthews candidates.

    Returns (:class:`~crysplugins.crystal.solvent_content_combination.CombinedEstimate`, messages).
    P_U comes from the model card.  Estimate once, from the experimental map, and keep the value.
    ``progress(fraction, message)`` is called after each batch of U-net tiles (``Request.report``
    there also stops a cancelled run).
    """
    from crysplugins.crystal.solvent_content_combination import LogitCutoffDistribution, combine

    pin = from_map(cmap, d_min)
    session, card = load_solvent_model(model_name)
    prob = symmetry_averaged(pin.map, solvent_probability(pin.map, session, card, progress=progress))
    dist = LogitCutoffDistribution.from_card(card.get("p_u"))
    expected = expected_solvent_content(prob)
    thresholds = card.get("combination", {})
    result = combine(matthews_s, matthews_p, lambda s: dist.of_solvent(prob, s), expected,
                     high=float(thresholds.get("high_threshold", 0.25)),
                     low=float(thresholds.get("low_threshold", 0.005)))
    messages = list(pin.messages) + [
        f"U-net expected solvent content {expected:.3f} (eq. 1); max P_M x P_U = {result.max_product:.3f} -> "
        f"{ {'matthews': 'Matthews value kept', 'conflation': 'centroid of P_M x P_U', 'unet': 'U-net value'}[result.branch]} "
        f"{result.solvent_fraction:.3f} (eq. 2)"]
    return result, messages


def symmetry_averaged(cmap: CrystalMap, values: np.ndarray) -> np.ndarray:
    """``values`` (an array on ``cmap``'s grid) averaged over the space group's symmetry mates (a copy)."""
    cm = CrystalMap.from_array(np.asarray(values, dtype=np.float32), cmap.cell, cmap.spacegroup)
    if cmap.spacegroup is not None and cmap.spacegroup.number != 1:
        cm.grid.symmetrize_avg()
    return cm.array.copy()


@hookimpl
def register_predictors(register):  # type: ignore[no-untyped-def]
    register(SolventMaskPredictor())
