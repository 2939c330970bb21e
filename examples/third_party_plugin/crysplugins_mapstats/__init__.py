"""Example third-party crysplugins plugin: statistics of a map and a sigma-scaled copy of it.

The predictor ``map-statistics`` takes one map (CCP4/MRC file on the command line) and returns

* scalars ``mean``, ``rms`` (root-mean-square deviation from the mean), ``min`` and ``max``, in the
  map's own units (e/Å³ for an absolute-scale density map);
* the map ``sigma_scaled`` = (map - mean) / rms on the same cell, space group and grid (units: σ).

It is registered through the ``register_predictors`` hook, the same way as the built-in plugins, and
found by the host through the entry point declared in ``pyproject.toml``.
"""
from __future__ import annotations

import numpy as np

from crysplugins.errors import CrysError
from crysplugins.hookspecs import hookimpl
from crysplugins.interface import (CrystalMap, InputSpec, Kind, OutputSpec, Prediction, Request,
                                   Scalar)

__version__ = "0.1.0"


class MapStatistics:
    """Mean, rms deviation, minimum and maximum of a map, and the map divided by its rms."""

    name = "map-statistics"
    version = __version__
    summary = "Mean, rms, min and max of a map and a sigma-scaled copy of it (example third-party plugin)."
    inputs = (
        InputSpec("map", Kind.MAP, "the map (whole unit cell, CCP4/MRC)", required=True),
    )
    outputs = (
        OutputSpec("mean", Kind.SCALAR, "mean value (map units)"),
        OutputSpec("rms", Kind.SCALAR, "root-mean-square deviation from the mean (map units)"),
        OutputSpec("min", Kind.SCALAR, "smallest value (map units)"),
        OutputSpec("max", Kind.SCALAR, "largest value (map units)"),
        OutputSpec("sigma_scaled", Kind.MAP, "(map - mean) / rms on the same grid", unit="σ"),
    )

    def predict(self, request: Request) -> Prediction:
        cmap: CrystalMap = request.require("map")
        values = cmap.array.astype(np.float64)
        request.report(0.3, "statistics")
        mean = float(values.mean())
        rms = float(values.std())
        if not np.isfinite(rms) or rms == 0.0:
            raise CrysError(f"The map {cmap.name} is flat (all values {mean:g}); it cannot be sigma-scaled.")
        request.report(0.6, "sigma scaling")
        scaled = CrystalMap.from_array((values - mean) / rms, cmap.cell, cmap.spacegroup,
                                       name=f"{cmap.name}_sigma", units="sigma")
        units = cmap.units
        request.report(1.0, "done")
        return Prediction(
            maps={"sigma_scaled": scaled},
            scalars={"mean": Scalar(mean, units), "rms": Scalar(rms, units),
                     "min": Scalar(float(values.min()), units), "max": Scalar(float(values.max()), units)},
            messages=[f"{cmap.name}: grid {list(cmap.shape)}, mean {mean:.4g}, rms {rms:.4g}"],
        )

    def example_inputs(self) -> dict:
        """A small synthetic map (two Gaussian blobs in a 20 x 24 x 28 Å P1 cell), made on the fly."""
        import gemmi

        shape = (20, 24, 28)
        grid = np.indices(shape).astype(np.float64)
        blob1 = np.exp(-sum((g - c) ** 2 for g, c in zip(grid, (5, 6, 7))) / 8.0)
        blob2 = 0.5 * np.exp(-sum((g - c) ** 2 for g, c in zip(grid, (14, 15, 20))) / 4.0)
        cell = gemmi.UnitCell(20, 24, 28, 90, 90, 90)
        return {"map": CrystalMap.from_array(blob1 + blob2, cell, "P 1", name="example")}


@hookimpl
def register_predictors(register):  # type: ignore[no-untyped-def]
    register(MapStatistics())
