"""Recycling at inference (paper 000, section 4): K cycles of predict -> refine -> template -> predict.

Two tiny random-weight RecCrysFormers (a one-channel first model and a two-channel recycled model) are
exported to ONNX here with torch; the refiner is the real density modification against the example's
amplitudes from a dataset built from tests/data/dataset.
"""
from __future__ import annotations

import json
import os

import gemmi
import numpy as np
import pytest

from crysplugins_test_support import tiny_recycling_dataset

torch = pytest.importorskip("torch", reason="the tiny test models are exported with torch (the training extra)")

ARCH = dict(conv_channels=4, conv_kernel=3, d_t=16, heads=2, depth=1, d_ff=32, attention="exact", partial=False,
            decoder_channels=4, decoder_kernel=3, max_patches_per_axis=8)


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    """(dataset, one test example's arrays and its amplitudes MTZ)."""
    from crysplugins.datasets.store import open_dataset

    ds = open_dataset(tiny_recycling_dataset(tmp_path_factory.mktemp("rci") / "ds"))
    shard = next(s for s in ds.shards("test") if s.shape == (16, 16, 16))
    arr = shard.load()
    ex = str(arr["ids"][0])
    seq = next(r["sequence"] for r in ds.index if r["id"] == ex)
    return ds, {k: v[0] for k, v in arr.items()}, ds.test_mtz(ex)[0], seq


@pytest.fixture(scope="module")
def models(tmp_path_factory, example):
    """A folder with two ONNX models + cards: 'rc-first' (1 channel) naming 'rc-recycled' (2 channels);
    the cards carry the tiny dataset's grid and normalisation, as an exported card does."""
    from crysplugins.runtime.models import CARD_FORMAT, sha256_file
    from crysplugins.training.nets.reccrysformer import RecCrysFormer

    folder = tmp_path_factory.mktemp("models")
    for name, ch, seed in (("rc-first", 1, 0), ("rc-recycled", 2, 1)):
        torch.manual_seed(seed)
        m = RecCrysFormer({**ARCH, "in_channels": ch}).eval()
        path = folder / f"{name}.onnx"
        torch.onnx.export(m, (torch.zeros(2, ch, 16, 16, 16),), str(path), input_names=["patterson"],
                          output_names=["density"], dynamic_axes={"patterson": {0: "b", 2: "n1", 3: "n2", 4: "n3"}},
                          dynamo=False)
        meta = example[0].meta
        card = {"format": CARD_FORMAT, "name": name, "task": "reccrysformer", "predictor": "patterson-density",
                "onnx": path.name, "sha256": sha256_file(path), "architecture": m.config,
                "normalisation": meta["normalisation"], "residue_types": meta["residue_types"], "n_residues": 2,
                "grid": {"d_min": 2.0, "sampling_rate": 2.5, "spacing": 0.8, "multiple": 8, "patch": 4,
                         "max_grid": 16}}
        if ch == 1:
            card["recycled_model"] = "rc-recycled"
        else:
            card["recycling"] = {"template_channel": 1, "base_model": "rc-first"}
        (folder / f"{name}.json").write_text(json.dumps(card))
    return folder


def test_k_cycles_run_the_recycled_model_on_the_refined_template(example, models):
    from crysplugins.crystal.io import read_mtz
    from crysplugins.crystal.refine import density_modify
    from crysplugins.runtime.runner import OnnxRunner
    from crysplugins.interface import CrystalMap
    from crysplugins.runtime.recycle import run_cycles, template_from_refinement

    ds, arr, mtz, seq = example
    cell = gemmi.UnitCell(*[float(v) for v in arr["cell"]])
    refl = read_mtz(mtz, need=("F",))
    first = OnnxRunner.from_path(models / "rc-first.onnx")
    recycled = OnnxRunner.from_path(models / "rc-recycled.onnx")
    assert (first.in_channels, recycled.in_channels) == (1, 2)
    pat = arr["patterson"].astype(np.float32)

    def refine(pred):
        return density_modify(CrystalMap.from_array(pred, cell, "P 1"), refl, sequence=seq, cycles=5)

    def predict_with_template(template):
        return recycled(np.stack([pat, template])[None], None)[0]

    p0 = first(pat[None, None], None)[0]
    out = run_cycles(p0, predict_with_template, refine, 2, cell)
    assert len(out.rows) == 3 and len(out.predictions) == 3
    assert [r[0] for r in out.rows] == [0, 1, 2] and out.rows[0][1] == "first" and out.rows[1][1] == "recycled"
    assert all(0.0 <= r[3] <= 1.0 for r in out.rows)
    # cycle 1 = the recycled model on the template made from the refinement of the first prediction
    tpl, is_ref = template_from_refinement(refine(p0), p0, cell)
    assert out.rows[1][2] == ("refined (appendix E)" if is_ref else "previous prediction")
    expected = recycled(np.stack([pat, tpl])[None], None)[0]
    np.testing.assert_allclose(out.predictions[1], expected, atol=1e-5)
    assert not np.allclose(out.predictions[1], p0)
    # a template that is not the refined map when refinement failed: the previous prediction itself
    forced, _ = template_from_refinement(refine(p0), p0, cell, use_unrefined=True)
    assert forced.min() >= -1 and forced.max() <= 1
    # zero cycles: just the first prediction and its refinement score
    zero = run_cycles(p0, predict_with_template, refine, 0, cell)
    assert len(zero.rows) == 1 and np.array_equal(zero.prediction, p0)


def test_the_recycled_model_is_found_from_either_card(models, monkeypatch):
    from crysplugins.runtime.models import clear_cache, find_card
    from crysplugins.runtime.recycle import recycled_model_name

    monkeypatch.setenv("CRYSPLUGINS_MODELS", str(models))
    clear_cache()
    first = find_card("rc-first")
    assert recycled_model_name(first, "rc-first") == "rc-recycled"
    # without the explicit entry, the recycled card's base_model pairs them
    data = dict(first.data)
    data.pop("recycled_model")
    assert recycled_model_name(data, "rc-first") == "rc-recycled"
    assert recycled_model_name(data, "no-such-model") is None


def test_patterson_density_plugin_runs_k_cycles(example, models, monkeypatch):
    from crysplugins.crystal.io import read_mtz
    from crysplugins.errors import CrysError
    from crysplugins.interface import Request, Sequence
    from crysplugins.plugins.patterson_density import PattersonDensityPredictor
    from crysplugins.runtime.models import clear_cache

    monkeypatch.setenv("CRYSPLUGINS_MODELS", str(models))
    clear_cache()
    ds, arr, mtz, seq = example
    refl = read_mtz(mtz, need=("F",))
    plugin = PattersonDensityPredictor()
    names = [i.name for i in plugin.inputs]
    assert "cycles" in names and next(i for i in plugin.inputs if i.name == "cycles").default is None
    base = plugin.predict(Request({"reflections": refl, "sequence": Sequence(seq), "model": "rc-first"}))
    assert "recycling" not in base.tables  # the card has no default_cycles: no recycling unless asked
    # a card with default_cycles recycles by default with reflections, and an explicit 0 turns it off
    card = json.loads((models / "rc-first.json").read_text())
    (models / "rc-first.json").write_text(json.dumps({**card, "default_cycles": 1}))
    clear_cache()
    by_default = plugin.predict(Request({"reflections": refl, "sequence": Sequence(seq), "model": "rc-first",
                                         "dm_cycles": 5}))
    assert [r["cycle"] for r in by_default.tables["recycling"].as_dicts()] == [0, 1]
    off = plugin.predict(Request({"reflections": refl, "sequence": Sequence(seq), "model": "rc-first", "cycles": 0}))
    assert "recycling" not in off.tables
    (models / "rc-first.json").write_text(json.dumps(card))
    clear_cache()
    out = plugin.predict(Request({"reflections": refl, "sequence": Sequence(seq), "model": "rc-first",
                                  "cycles": 2, "dm_cycles": 5}))
    table = out.tables["recycling"]
    assert [r["cycle"] for r in table.as_dicts()] == [0, 1, 2]
    assert [r["model"] for r in table.as_dicts()] == ["first", "recycled", "recycled"]
    assert all(0 <= r["dm_score"] <= 1 for r in table.as_dicts())
    assert out.maps["density"].shape == base.maps["density"].shape
    assert not np.allclose(out.maps["density"].array, base.maps["density"].array)  # the recycled model's map
    assert any("recycling cycle" in m for m in out.messages)
    assert out.meta["output"] == "prediction" and "density_prediction" not in out.maps  # the card has no default_output
    # the refined output: a final density modification of the last prediction, centred; the network's map beside it
    refined = plugin.predict(Request({"reflections": refl, "sequence": Sequence(seq), "model": "rc-first",
                                      "cycles": 2, "dm_cycles": 5, "final_dm_cycles": 7, "output": "refined"}))
    assert refined.meta["output"] == "refined"
    np.testing.assert_allclose(refined.maps["density_prediction"].array, out.maps["density"].array, atol=1e-5)
    assert not np.allclose(refined.maps["density"].array, out.maps["density"].array)
    assert any("density-modified map of the last prediction (7 cycles" in m for m in refined.messages)
    with pytest.raises(CrysError, match="'refined' or 'prediction'"):
        plugin.predict(Request({"reflections": refl, "sequence": Sequence(seq), "model": "rc-first", "cycles": 1,
                                "dm_cycles": 5, "output": "best"}))
    # a first model without a recycled companion: one clear error
    card = json.loads((models / "rc-first.json").read_text())
    card.pop("recycled_model")
    lone = models.parent / "lone"
    lone.mkdir(exist_ok=True)
    (lone / "rc-first.json").write_text(json.dumps(card))
    (lone / "rc-first.onnx").write_bytes((models / "rc-first.onnx").read_bytes())
    monkeypatch.setenv("CRYSPLUGINS_MODELS", str(lone))
    clear_cache()
    with pytest.raises(CrysError, match="no recycled model"):
        plugin.predict(Request({"reflections": refl, "sequence": Sequence(seq), "model": "rc-first", "cycles": 1}))
    clear_cache()
