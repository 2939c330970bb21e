"""A tiny third-party crysplugins plugin used by the Coot script tests (entry point ``coot-test``).

The tests copy this module into a temporary folder next to a ``*.dist-info`` with an entry point in the
``crysplugins`` group and put that folder on the child's PYTHONPATH, so ``crysplugins list`` and
``crysplugins predict`` find it exactly as they find an installed third-party package.

Predictors (deliberately simple, real maths on real maps):

* ``coot-test-normalise``: map -> map ``normalised`` ((x - mean) / rms, rms in the map's units, e.g.
  e/Å³), mask ``mask`` (1 where the map is above mean + 1 rms), scalars ``mask_fraction`` and ``map_rms``;
* ``coot-test-amplitudes``: reflections (F, PHI optional) -> scalars ``n_reflections``, ``mean_f`` and the
  map coefficients ``coefficients`` (MTZ with F, PHI = 0: no map output, so Coot makes a map from it);
* ``coot-test-sequence``: map + sequence -> scalar ``n_residues``.
"""
from __future__ import annotations

import numpy as np

from crysplugins.hookspecs import hookimpl
from crysplugins.crystal.io import make_mtz
from crysplugins.interface import CrystalMap, InputSpec, Kind, OutputSpec, Prediction, Reflections, Scalar


class Normalise:
    name = "coot-test-normalise"
    version = "0.1"
    summary = "Normalise a map to zero mean and unit rms and mask it at 1 rms (Coot test plugin)."
    inputs = (InputSpec("map", Kind.MAP, "a CCP4 map", required=True),)
    outputs = (OutputSpec("normalised", Kind.MAP, "normalised map"),
               OutputSpec("mask", Kind.MASK, "1 above mean + 1 rms"),
               OutputSpec("mask_fraction", Kind.SCALAR, "fraction of the cell in the mask"),
               OutputSpec("map_rms", Kind.SCALAR, "rms of the input map", unit="e/Å³"))

    def predict(self, request):
        cmap = request.require("map")
        arr = cmap.array.astype(np.float64)
        mean, rms = float(arr.mean()), float(arr.std())
        request.report(0.5, "normalising")
        norm = (arr - mean) / rms
        mask = (norm > 1.0).astype(np.float32)
        return Prediction(
            maps={"normalised": CrystalMap.from_array(norm, cmap.cell, cmap.spacegroup, "normalised"),
                  "mask": CrystalMap.from_array(mask, cmap.cell, cmap.spacegroup, "mask")},
            scalars={"mask_fraction": Scalar(float(mask.mean())), "map_rms": Scalar(rms, "e/Å³")},
            messages=["normalised with mean %.4g and rms %.4g" % (mean, rms)])


class Amplitudes:
    name = "coot-test-amplitudes"
    version = "0.1"
    summary = "Count reflections and average the amplitudes (Coot test plugin)."
    inputs = (InputSpec("reflections", Kind.REFLECTIONS, "MTZ file", required=True, columns=("F", "PHI?")),)
    outputs = (OutputSpec("n_reflections", Kind.SCALAR, "number of reflections"),
               OutputSpec("mean_f", Kind.SCALAR, "mean amplitude"),
               OutputSpec("coefficients", Kind.REFLECTIONS, "F and PHI = 0"))

    def predict(self, request):
        refl = request.require("reflections")
        f = refl.amplitudes()
        mtz = make_mtz(refl.cell, refl.spacegroup, refl.miller_array(),
                       {"F": ("F", f), "PHI": ("P", np.zeros_like(f))})
        return Prediction(scalars={"n_reflections": Scalar(float(len(f))), "mean_f": Scalar(float(np.mean(f)))},
                          reflections={"coefficients": Reflections(mtz, {"F": "F", "PHI": "PHI"}, "coefficients")},
                          messages=["F column: %s" % refl.label("F")])


class SequenceLength:
    name = "coot-test-sequence"
    version = "0.1"
    summary = "Count the residues of the sequence given with a map (Coot test plugin)."
    inputs = (InputSpec("map", Kind.MAP, "a CCP4 map", required=True),
              InputSpec("sequence", Kind.SEQUENCE, "protein sequence", required=True))
    outputs = (OutputSpec("n_residues", Kind.SCALAR, "residues in the sequence"),)

    def predict(self, request):
        seq = request.require("sequence")
        return Prediction(scalars={"n_residues": Scalar(float(len(seq)))}, messages=["sequence %s" % seq.residues])


@hookimpl
def register_predictors(register):
    register(Normalise())
    register(Amplitudes())
    register(SequenceLength())
