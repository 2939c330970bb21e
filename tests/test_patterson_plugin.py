"""The shipped patterson-density plugin: registered through the host, no torch on the inference path,
the shipped example reproduces the Pearson its model card claims, and user errors are one sentence."""
from __future__ import annotations

import json
import subprocess
import sys
from importlib import resources

import gemmi
import numpy as np
import pytest

from crysplugins.errors import CrysError
from crysplugins.interface import Request, Sequence

NAME = "reccrysformer_dipeptide"


def shipped_card():
    path = resources.files("crysplugins.models") / f"{NAME}.json"
    if not path.is_file():
        pytest.fail(f"the shipped model card models/{NAME}.json is missing")
    return json.loads(path.read_text())


@pytest.fixture
def predictor(monkeypatch):
    monkeypatch.delenv("CRYSPLUGINS_MODELS", raising=False)
    from crysplugins.runtime import models

    models.clear_cache()
    from crysplugins.plugins.patterson_density import PattersonDensityPredictor

    return PattersonDensityPredictor()


def test_registered_and_torch_free():
    code = ("import sys; from crysplugins.host import default_host; h = default_host(); "
            "p = h.get('patterson-density'); import crysplugins.plugins.patterson_density, "
            "crysplugins.runtime.models; from crysplugins.interface import Request; "
            "r = p.predict(Request(p.example_inputs())); "  # the default: recycling + the hand model
            "assert 'recycling' in r.tables and r.meta['hand_model']; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_shipped_example_reproduces_the_card(predictor):
    from crysplugins.crystal import io
    from crysplugins.crystal.fourier import FourierGrid
    from crysplugins.crystal.metrics import pearson
    from crysplugins.crystal.maps import invert_grid

    card = shipped_card()
    ex = card["example"]
    inputs = predictor.example_inputs()
    assert len(inputs["sequence"]) == card["n_residues"]
    truth = io.read_mtz(str(resources.files("crysplugins") / "data" / "examples" / "patterson_density" / ex["phases"]),
                        need=("F", "PHI"))
    # the default pipeline (card default_cycles: three recycling cycles, then the recycled model's hand model)
    # and the first model alone (cycles = 0)
    for request, claimed in ((Request(inputs), ex), (Request({**inputs, "cycles": 0}), ex["first_model"])):
        pred = predictor.predict(request)
        dmap = pred.maps["density"]
        fg = FourierGrid(truth.miller_array(), dmap.shape, float(truth.cell.volume))
        true_map = fg.to_map(truth.values("F") * np.exp(1j * np.radians(truth.values("PHI"))))
        assert pearson(true_map, dmap.array) == pytest.approx(claimed["pearson"], abs=1e-3)
        phases = pred.reflections["phases"]
        assert phases.has("PHI") and np.isfinite(phases.values("PHI")).all()
        json.dumps(pred.summary(), allow_nan=False, default=str)
    # the first model has no hand model (no NaN logit in its meta); the recycled model's card names one
    assert not card.get("hand_model") and "hand_logit" not in pred.meta
    assert card["default_cycles"] == 3 and card["recycled_model"] == ex["recycled_model"]
    default = predictor.predict(Request(inputs))
    assert "recycling" in default.tables and default.meta["hand_model"] == ex["hand_model"]
    assert [r["cycle"] for r in default.tables["recycling"].as_dicts()] == list(range(card["default_cycles"] + 1))
    assert default.meta["hand_inverted"] == ex["hand_inverted"]
    # the rejected hand comes with it, and the network's own map beside the density-modified 'density'
    assert default.meta["output"] == card["default_output"] == ex["output"] == "refined"
    other = default.maps["density_other_hand"].array
    assert np.array_equal(other, invert_grid(default.maps["density"].array))
    fg = FourierGrid(truth.miller_array(), other.shape, float(truth.cell.volume))
    true_map = fg.to_map(truth.values("F") * np.exp(1j * np.radians(truth.values("PHI"))))
    assert pearson(true_map, other) == pytest.approx(ex["pearson_other_hand"], abs=1e-3)
    network = default.maps["density_prediction"].array
    assert pearson(true_map, network) == pytest.approx(ex["pearson_prediction"], abs=1e-3)
    as_predicted = predictor.predict(Request({**inputs, "output": "prediction"}))
    assert "density_prediction" not in as_predicted.maps
    assert np.allclose(as_predicted.maps["density"].array, network, atol=1e-5)
    # every map the plugin returns is centred where the training data put the centre of mass
    from crysplugins.crystal.maps import density_centroid

    for m in (default.maps["density"].array, other, network):
        assert np.abs(density_centroid(m)).max() < 5e-3
    hand_card = json.loads((resources.files("crysplugins.models") / f"{ex['hand_model']}.json").read_text())
    metrics = hand_card["metrics"]  # the message quotes the hand card: its accuracy in the shipped pipeline
    quoted = f"{100 * (metrics.get('pipeline_test') or metrics['test'])['hand_accuracy']:.0f} %"
    assert any("density_other_hand" in m and quoted in m for m in default.messages)
    assert "density_other_hand" not in predictor.predict(Request({**inputs, "cycles": 0})).maps  # no hand call
    # a real prediction, not noise, whichever hand it ends in
    assert max(ex["pearson"], ex["pearson_other_hand"]) > card["metrics"]["baseline_mean_pearson"]


def test_hand_none_leaves_the_predicted_hand(predictor):
    """'hand': 'none' skips the hand model: no hand call in the meta, no rejected-hand map, and the density is
    the default run's map or its inverse through the cell centre (whichever hand the network predicted)."""
    from crysplugins.crystal.maps import invert_grid

    inputs = predictor.example_inputs()
    default = predictor.predict(Request(inputs))
    bare = predictor.predict(Request({**inputs, "hand": "none"}))
    assert "hand_model" not in bare.meta and "hand_logit" not in bare.meta
    assert "density_other_hand" not in bare.maps
    expected = default.maps["density"].array
    if default.meta["hand_inverted"]:
        expected = invert_grid(expected)
    assert np.allclose(bare.maps["density"].array, expected, atol=1e-4)
    assert any("Hand left as predicted" in m for m in bare.messages)


def test_patterson_map_input_gives_the_same_density(predictor):
    from crysplugins.crystal.maps import grid_shape, patterson_map

    card = shipped_card()
    inputs = predictor.example_inputs()
    refl = inputs["reflections"]
    g = card["grid"]
    shape = grid_shape(refl.cell, g["spacing"], g["multiple"])
    pmap = patterson_map((refl.miller_array(), refl.amplitudes()), refl.cell, shape)
    a = predictor.predict(Request({**inputs, "cycles": 0})).maps["density"].array  # a map alone cannot recycle
    pb = predictor.predict(Request({"patterson": pmap, "sequence": inputs["sequence"]}))
    assert np.allclose(a, pb.maps["density"].array, atol=1e-4)
    assert any("needs the observed amplitudes" in m for m in pb.messages) and "recycling" not in pb.tables


def test_user_errors(predictor):
    inputs = predictor.example_inputs()
    refl = inputs["reflections"]
    with pytest.raises(CrysError, match="exactly"):
        predictor.predict(Request({"reflections": refl, "sequence": Sequence("GAVL"), "model": NAME}))
    inputs = {**inputs, "model": NAME}
    with pytest.raises(CrysError, match="no model named"):
        predictor.predict(Request({**inputs, "model": "no-such-model"}))
    p1_cell = refl.mtz.cell
    refl.mtz.spacegroup = gemmi.SpaceGroup("P 21 21 21")
    with pytest.raises(CrysError, match="P 1"):
        predictor.predict(Request(inputs))
    refl.mtz.spacegroup = gemmi.SpaceGroup("P 1")
    # a larger cell with the same hkl: the data no longer reach the model's resolution
    # (all axes x 1.25: every d-spacing grows by 1.25, while the grid stays within the model's 32 points)
    refl.mtz.set_cell_for_all(gemmi.UnitCell(p1_cell.a * 1.25, p1_cell.b * 1.25, p1_cell.c * 1.25, p1_cell.alpha,
                                              p1_cell.beta, p1_cell.gamma))
    with pytest.raises(CrysError, match="trained on data to 1.50"):
        predictor.predict(Request(inputs))
    # a cell whose 0.5 Å grid exceeds the model's largest grid
    from crysplugins.crystal.fourier import p1_hkl
    from crysplugins.crystal.io import make_mtz
    from crysplugins.interface import Reflections

    big = gemmi.UnitCell(21.0, 8.0, 8.0, 90, 90, 90)
    hkl = p1_hkl(big, 1.5)
    mtz = make_mtz(big, gemmi.SpaceGroup("P 1"), hkl, {"F": ("F", np.ones(len(hkl)))})
    with pytest.raises(CrysError, match="at most 32"):  # the specialist named (without --model: a general one)
        predictor.predict(Request({"reflections": Reflections(mtz, {"F": "F"}), "sequence": inputs["sequence"],
                                   "model": "reccrysformer_dipeptide"}))
    # an angle outside the trained range
    odd = gemmi.UnitCell(8.0, 8.0, 8.0, 90, 90, 60)
    hkl = p1_hkl(odd, 1.5)
    mtz = make_mtz(odd, gemmi.SpaceGroup("P 1"), hkl, {"F": ("F", np.ones(len(hkl)))})
    with pytest.raises(CrysError, match="angle"):
        predictor.predict(Request({"reflections": Reflections(mtz, {"F": "F"}), "sequence": inputs["sequence"]}))


def test_cli_predict_on_the_example(tmp_path):
    from crysplugins.examples import EXAMPLES

    card = shipped_card()
    root = EXAMPLES / "patterson_density"
    ex = card["example"]
    out = subprocess.run([sys.executable, "-m", "crysplugins.cli", "predict", "patterson-density",
                          "--reflections", str(root / ex["amplitudes"]), "--sequence", ex["sequence"],
                          "--out", str(tmp_path), "--json"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert (tmp_path / "density.ccp4").exists() and (tmp_path / "phases.mtz").exists()
    assert result["maps"]["density"]["grid"] == ex["grid"]
