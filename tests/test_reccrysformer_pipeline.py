"""The RecCrysFormer runtime pipeline with the shipped models: its result keeps every intermediate,
``on_cycle`` sees each recycling cycle once, the refiner comes from the host's registry, and the plugin's
output is the result's."""
from __future__ import annotations

import numpy as np
import pytest

from crysplugins.crystal.refine import DensityModificationRefiner
from crysplugins.errors import CrysError
from crysplugins.hookspecs import hookimpl
from crysplugins.host import Host
from crysplugins.interface import ObservedAmplitudes, Refiner, Request
from crysplugins.plugins.patterson_density import PattersonDensityPredictor
from crysplugins.request import run_prediction
from crysplugins.runtime.reccrysformer import RecCrysFormerPipeline

MODEL = "reccrysformer_dipeptide"


@pytest.fixture
def example(monkeypatch):
    monkeypatch.delenv("CRYSPLUGINS_MODELS", raising=False)
    return PattersonDensityPredictor().example_inputs()


class CountingRefiner:
    """The built-in density modification, counting its calls (registered under the built-in's name)."""

    name = "density-modification"
    summary = "counts"

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.inner = DensityModificationRefiner()

    def refine(self, cmap, observed, **options):
        assert isinstance(observed, ObservedAmplitudes)  # parsed once, with its cell
        self.calls.append(int(options["cycles"]))
        return self.inner.refine(cmap, observed, **options)


def test_result_keeps_every_intermediate_and_on_cycle_sees_each_cycle(example):
    pipeline = RecCrysFormerPipeline(MODEL, DensityModificationRefiner())
    settings = pipeline.settings(cycles=2, dm_cycles=3, final_dm_cycles=4, output="refined")
    seen = []
    observed = ObservedAmplitudes.from_reflections(example["reflections"])
    result = pipeline.run(example["sequence"], observed, settings=settings, on_cycle=seen.append)
    records = result.recycling.records
    assert [r.index for r in seen] == [0, 1, 2] and all(a is b for a, b in zip(seen, records))
    assert [r.model for r in records] == ["first", "recycled", "recycled"]
    assert records[0].prediction is not None and np.array_equal(records[0].prediction, result.first_prediction)
    assert records[0].change is None and all(-1 <= r.change <= 1 for r in records[1:])
    assert result.patterson.shape == result.first_prediction.shape == tuple(result.shape)
    assert result.model == "reccrysformer_dipeptide_recycled" and result.hand.model
    assert result.final_refinement is not None and result.final_refinement is not records[-1].refinement
    assert result.observed is observed and len(result.observed_used) <= len(observed)
    # the hand decision is applied once, to the last prediction and the refined map alike
    last = records[-1].prediction
    flipped = np.roll(np.flip(last), 1, axis=(0, 1, 2))
    assert np.array_equal(result.prediction, flipped if result.hand.inverted else last)
    assert result.refined is not None and result.refined_density is not None
    assert result.output is result.refined_density and result.density is not None
    meta = result.meta()
    assert meta["hand_model"] == result.hand.model and meta["output"] == "refined"


def test_the_plugin_output_is_the_pipeline_result(example):
    plugin = PattersonDensityPredictor()
    req = Request({**example, "cycles": 1, "dm_cycles": 3, "final_dm_cycles": 0, "output": "prediction"})
    pipeline, result = plugin.run_pipeline(req)
    pred = plugin.predict(Request(dict(req.inputs)))
    np.testing.assert_array_equal(pred.maps["density"].array, result.output.astype(np.float32))
    assert pred.meta == result.meta() and pred.tables["recycling"].rows == result.recycling.rows
    assert "density_prediction" not in pred.maps  # 'prediction' output: the network's map is 'density'


def test_the_refiner_comes_from_the_hosts_registry(example):
    counting = CountingRefiner()
    assert isinstance(counting, Refiner)

    class Plugin:
        @hookimpl
        def register_refiners(self, register):
            register(counting)

    host = Host(autoload=False, only=["patterson_density"], extra_plugins=[("counting", Plugin())])
    assert host.get_refiner("density-modification") is counting
    predictor = host.get("patterson-density")
    refiners = {name: entry.refiner for name, entry in host.refiners.items()}
    run_prediction(predictor, {**example, "cycles": 2, "dm_cycles": 3, "final_dm_cycles": 5}, refiners=refiners)
    assert counting.calls == [3, 3, 3, 5]  # one refinement per cycle, then the final one
    # a registry without the pipeline's refiner: one sentence naming what is installed
    with pytest.raises(CrysError, match="no refiner called 'density-modification' \\(installed: other\\)"):
        run_prediction(predictor, {**example, "cycles": 1}, refiners={"other": counting})
    # no recycling, no refiner needed
    run_prediction(predictor, {**example, "cycles": 0}, refiners={})


def test_an_invalid_refiner_is_named_and_skipped():
    class NotARefiner:
        name = "half"

    class Plugin:
        @hookimpl
        def register_refiners(self, register):
            register(NotARefiner())

    host = Host(autoload=False, only=["refiners"], extra_plugins=[("half_plugin", Plugin())])
    assert "half" not in host.refiners and "density-modification" in host.refiners
    errors = [f.error for f in host.failures if f.plugin == "half_plugin"]
    assert errors == ["invalid refiner: 'refine' must be callable"]
