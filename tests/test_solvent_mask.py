"""The solvent-mask predictors: whole-cell U-net mask (shipped ONNX model) and the local-variance baseline.

Inputs are made here with gemmi from a synthetic P 21 21 21 crystal (no /work/shared needed).
"""
from __future__ import annotations

import subprocess
import sys

import gemmi
import numpy as np
import pytest

from crysplugins.crystal.io import read_map, read_mtz, write_map, write_mtz
from crysplugins.errors import CrysError
from crysplugins.interface import CrystalMap, Reflections, Request
from crysplugins.plugins.solvent_mask import SolventMaskPredictor
from crysplugins.plugins.solvent_mask_local_variance import LocalVarianceMaskPredictor
from crysplugins.runtime.solvent_unet import load_solvent_model
from crysplugins_test_support import blob_structure


@pytest.fixture(scope="module")
def crystal(tmp_path_factory):
    from crysplugins.datasets.phasing import phasing_map, phasing_mtz, prepare_source, simulate_phasing

    st = blob_structure(sg="P 21 21 21", cell=(34.0, 40.0, 46.0, 90, 90, 90), n=120)
    src = prepare_source(st, 3.0)
    sim = simulate_phasing(src, 40.0, np.random.default_rng(1))
    folder = tmp_path_factory.mktemp("solvent")
    write_mtz(phasing_mtz(src, sim), folder / "phased.mtz")
    cmap = phasing_map(src, sim)
    write_map(cmap, folder / "phased.ccp4")
    return {"src": src, "folder": folder, "map": cmap}


def symmetric(cmap: CrystalMap) -> bool:
    g = cmap.grid.clone()
    g.spacegroup = gemmi.SpaceGroup("P 21 21 21")
    g.symmetrize_avg()
    return np.allclose(np.array(g, copy=False), cmap.array, atol=1e-6)


def test_shipped_model_has_a_card_with_pu():
    runner, card = load_solvent_model()
    assert card["input"]["window"] == 48 and card["input"]["normalisation"] == "zscore-cell"
    assert abs(sum(card["p_u"]["probabilities"]) - 1.0) < 1e-3
    assert runner.input_names[0] == card["input"]["name"]


def test_unet_mask_from_mtz_respects_symmetry(crystal):
    refl = read_mtz(crystal["folder"] / "phased.mtz", need=("F", "PHI"), want=("FOM",))
    pred = SolventMaskPredictor().predict(Request(inputs={"reflections": refl, "solvent_fraction": 0.6}))
    prob, mask = pred.maps["solvent_probability"], pred.maps["mask"]
    assert prob.shape == mask.shape
    assert 0.0 <= prob.array.min() and prob.array.max() <= 1.0
    assert symmetric(prob) and symmetric(mask)
    assert abs(pred.scalars["solvent_fraction"].value - 0.6) < 0.02
    assert 0.0 < pred.scalars["expected_solvent_fraction"].value < 1.0
    assert set(np.unique(mask.array)) <= {0.0, 1.0}


def test_unet_mask_from_map_comes_back_on_the_map_grid(crystal):
    # a finer, non-Shannon grid: the result must come back on exactly that grid
    src_map = crystal["map"]
    fine = gemmi.transform_map_to_f_phi(src_map.grid, half_l=True).prepare_asu_data(dmin=3.0)
    grid = fine.transform_f_phi_to_map(exact_size=[36, 40, 50])
    grid.spacegroup = src_map.spacegroup
    user_map = CrystalMap(grid=grid, name="user")
    pred = SolventMaskPredictor().predict(Request(inputs={"map": user_map, "resolution": 3.0}))
    assert pred.maps["mask"].shape == (36, 40, 50)
    assert symmetric(pred.maps["solvent_probability"])
    # no fraction given: the mask uses the expected solvent content (eq. 1)
    assert abs(pred.scalars["solvent_fraction"].value - pred.scalars["expected_solvent_fraction"].value) < 0.03


def test_local_variance_baseline(crystal):
    from crysplugins.crystal.masks import mask_scores

    refl = read_mtz(crystal["folder"] / "phased.mtz", need=("F", "PHI"), want=("FOM",))
    src = crystal["src"]
    pred = LocalVarianceMaskPredictor().predict(Request(inputs={"reflections": refl,
                                                                "solvent_fraction": src.solvent_fraction}))
    mask = pred.maps["mask"]
    assert symmetric(mask)
    assert mask.shape == src.shape
    assert mask_scores(mask, src.mask).accuracy > 0.8
    with pytest.raises(CrysError, match="solvent-fraction"):
        LocalVarianceMaskPredictor().predict(Request(inputs={"reflections": refl}))


def test_mtz_without_phases_is_refused(crystal, tmp_path):
    mtz = gemmi.read_mtz_file(str(crystal["folder"] / "phased.mtz"))
    refl = Reflections(mtz=mtz, columns={"F": "FP"})
    with pytest.raises(CrysError, match="no phase column"):
        SolventMaskPredictor().predict(Request(inputs={"reflections": refl}))
    # through the CLI: one clear sentence, non-zero exit, no output written
    src = crystal["src"]
    from crysplugins.crystal.io import make_mtz
    amp_only = make_mtz(src.cell, src.spacegroup, src.hkl, {"FP": ("F", np.abs(src.f_model))})
    write_mtz(amp_only, tmp_path / "amplitudes.mtz")
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "crysplugins.cli", "predict", "solvent-mask", "--reflections",
                        str(tmp_path / "amplitudes.mtz"), "--out", str(out)], capture_output=True, text=True)
    assert r.returncode != 0
    assert "Traceback" not in r.stderr and "PHI" in r.stderr
    assert not out.exists() or not any(out.iterdir())


def test_corrupt_and_flat_maps_are_refused(tmp_path):
    bad = tmp_path / "bad.ccp4"
    bad.write_bytes(b"this is not a map" * 20)
    with pytest.raises(CrysError):
        read_map(bad)
    r = subprocess.run([sys.executable, "-m", "crysplugins.cli", "predict", "solvent-mask", "--map", str(bad)],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "Traceback" not in r.stderr and "map" in r.stderr
    flat = CrystalMap.from_array(np.ones((24, 24, 24)), gemmi.UnitCell(30, 30, 30, 90, 90, 90), "P 1")
    with pytest.raises(CrysError, match="flat"):
        SolventMaskPredictor().predict(Request(inputs={"map": flat}))
    nan = CrystalMap.from_array(np.full((24, 24, 24), np.nan), gemmi.UnitCell(30, 30, 30, 90, 90, 90), "P 1")
    with pytest.raises(CrysError):
        SolventMaskPredictor().predict(Request(inputs={"map": nan}))
