"""What the `patterson-density` pipeline studies share: one example run exactly as the CLI runs it, beside
the example's true map on the output's grid, and the JSON file each study writes."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gemmi
import numpy as np

from crysplugins.crystal.fourier import FourierGrid
from crysplugins.evaluation.compare import PredictorLabel, request_for, true_data


@dataclass
class RunAgainstTruth:
    """The plugin's ``pipeline``, its ``result`` and ``request``; the example's true data (``hkl``, amplitudes
    ``f``, phases ``phi`` in degrees, ``cell``); the plugin's ``output`` density and the ``true`` map, both on
    the Fourier grid ``fg`` of the output."""

    pipeline: Any
    result: Any
    request: Any
    cell: gemmi.UnitCell
    hkl: np.ndarray
    f: np.ndarray
    phi: np.ndarray
    output: np.ndarray
    fg: FourierGrid
    true: np.ndarray


def run_against_truth(example: Any, host: Any, label: PredictorLabel) -> RunAgainstTruth:
    """Run the plugin named by ``label`` on ``example`` as the CLI does and put the true map beside its output."""
    predictor, request = request_for(host, label, example)
    pipeline, result = predictor.run_pipeline(request)
    prediction = predictor.to_prediction(result)
    cell, hkl, f, phi = true_data(example)
    output = np.asarray(prediction.maps["density"].array, dtype=np.float64)
    fg = FourierGrid(hkl, output.shape, float(cell.volume))
    true = fg.to_map(f * np.exp(1j * np.radians(phi)))
    return RunAgainstTruth(pipeline, result, request, cell, hkl, f, phi, output, fg, true)


def write_study(path: str | Path, summary: dict, records: list[dict]) -> None:
    """Write ``{"summary": ..., "records": ...}`` to ``path`` (its folder made) and print the summary."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps({"summary": summary, "records": records}, indent=1))
    print(json.dumps(summary, indent=1))
