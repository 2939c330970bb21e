"""The solvent U-net at inference (Skubák 2024, sections 2.1-2.3): numpy + gemmi + onnxruntime, no torch.

A phasing map on the Shannon grid of its resolution (:mod:`crysplugins.crystal.phasing_input`) is
normalised as the model card says (zero mean, unit standard deviation over the cell), cut into overlapping
periodic 48³ tiles covering the whole cell (:mod:`crysplugins.runtime.tiling`) and run through the ONNX
U-net; the per-voxel solvent probabilities are blended, averaged over symmetry mates (gemmi
``symmetrize_avg``, so the result respects the space group) and brought back to the input grid.
:func:`unet_solvent_content` is eq. 1 and eq. 2 (the U-net's expected solvent content combined with the
Matthews candidates).
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from crysplugins.crystal.masks import threshold_fraction
from crysplugins.crystal.phasing_input import PhasingInput, from_map, resample_periodic
from crysplugins.crystal.solvent_content_combination import (CombinedEstimate, LogitCutoffDistribution, combine,
                                                            expected_solvent_content)
from crysplugins.errors import CrysError
from crysplugins.interface import CrystalMap
from crysplugins.runtime.runner import OnnxRunner
from crysplugins.runtime.tiling import predict_tiled, with_flips

MODEL_NAME = "solvent-unet"


def load_solvent_model(name: str = MODEL_NAME) -> tuple[OnnxRunner, dict]:
    """(runner, card as a dict) of the solvent U-net from the model registry."""
    runner, card = OnnxRunner.from_model(name)
    return runner, card.data


def _softmax_solvent(logits: np.ndarray) -> np.ndarray:
    """Two-class logits (b, 2, ...) -> (b, 1, ...) probability of class 1 (solvent)."""
    return (1.0 / (1.0 + np.exp(logits[:, :1] - logits[:, 1:2]))).astype(np.float32)


def solvent_probability(cmap: CrystalMap, model: OnnxRunner | Any, card: dict, overlap: int | None = None,
                        progress: Callable[[float, str], None] | None = None,
                        views: int | None = None) -> np.ndarray:
    """Per-voxel P(solvent) on ``cmap``'s grid from the U-net (tiled over the whole cell).

    ``model``: the runner of :func:`load_solvent_model` (or an onnxruntime session).  ``views``: test-time
    augmentation, the number of mirror views averaged per tile (1-8,
    :func:`crysplugins.runtime.tiling.with_flips`); default the card's ``tiling.views`` or 1."""
    runner = model if isinstance(model, OnnxRunner) else OnnxRunner(model, str(card.get("name", MODEL_NAME)))
    inp = card.get("input", {})
    window = int(inp.get("window", 48))
    norm = inp.get("normalisation", "zscore-cell")
    if norm != "zscore-cell":
        raise CrysError(f"The model card asks for an input normalisation this version does not know: {norm}.")
    arr = np.asarray(cmap.array, dtype=np.float32)
    arr = (arr - float(arr.mean())) / max(float(arr.std()), 1e-12)
    in_name = runner.input_names[0]
    tiling = card.get("tiling", {})
    overlap = int(tiling.get("overlap", 16) if overlap is None else overlap)
    views = int(tiling.get("views", 1) if views is None else views)
    predict = with_flips(lambda x: _softmax_solvent(runner.run({in_name: x})), views)
    out = predict_tiled(arr, predict, window=window, overlap=overlap, batch_size=int(tiling.get("batch", 2)),
                        progress=progress)
    return out[0]


def symmetry_averaged(cmap: CrystalMap, values: np.ndarray) -> np.ndarray:
    """``values`` (an array on ``cmap``'s grid) averaged over the space group's symmetry mates (a copy)."""
    cm = CrystalMap.from_array(np.asarray(values, dtype=np.float32), cmap.cell, cmap.spacegroup)
    if cmap.spacegroup is not None and cmap.spacegroup.number != 1:
        cm.grid.symmetrize_avg()
    return cm.array.copy()


def finish_mask(pin: PhasingInput, prob: np.ndarray, fraction: float, names: tuple[str, str],
                units: str = "P(solvent)") -> tuple[CrystalMap, CrystalMap]:
    """Symmetry-average a score map on the Shannon grid, bring it to the output grid and threshold it
    (solvent = 1 for the ``fraction`` of the cell with the highest scores)."""
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


def unet_solvent_content(cmap: CrystalMap, matthews_s: list[float], matthews_p: list[float],
                         d_min: float | None = None, model_name: str = MODEL_NAME,
                         progress: Callable[[float, str], None] | None = None) -> tuple[CombinedEstimate, list[str]]:
    """Eq. 1 and eq. 2 (Skubák 2024, section 2.3) for a phasing map and Matthews candidates.

    Returns (:class:`~crysplugins.crystal.solvent_content_combination.CombinedEstimate`, messages).
    P_U comes from the model card.  Estimate once, from the experimental map, and keep the value.
    ``progress(fraction, message)`` is called after each batch of U-net tiles (``Request.report``
    there also stops a cancelled run).
    """
    pin = from_map(cmap, d_min)
    runner, card = load_solvent_model(model_name)
    prob = symmetry_averaged(pin.map, solvent_probability(pin.map, runner, card, progress=progress))
    dist = LogitCutoffDistribution.from_card(card.get("p_u"))
    expected = expected_solvent_content(prob)
    thresholds = card.get("combination", {})
    result = combine(matthews_s, matthews_p, lambda s: dist.of_solvent(prob, s), expected,
                     high=float(thresholds.get("high_threshold", 0.25)),
                     low=float(thresholds.get("low_threshold", 0.005)))
    branch = {"matthews": "Matthews value kept", "conflation": "centroid of P_M x P_U",
              "unet": "U-net value"}[result.branch]
    messages = list(pin.messages) + [
        f"U-net expected solvent content {expected:.3f} (eq. 1); max P_M x P_U = {result.max_product:.3f} -> "
        f"{branch} {result.solvent_fraction:.3f} (eq. 2)"]
    return result, messages
