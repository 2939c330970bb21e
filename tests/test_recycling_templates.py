"""``crysplugins dataset templates``: predict -> refine -> appendix E template for every example, resumable.

The dataset is built here with the real builder from the small structures in tests/data/dataset
(dipeptides at 2 Å, maps of at most 16 voxels a side), and the model is a tiny random-weight
RecCrysFormer (torch) or its ONNX export.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from crysplugins.crystal.refine import REFINED_CC
from crysplugins.errors import CrysError
from crysplugins_test_support import tiny_recycling_dataset

torch = pytest.importorskip("torch", reason="the test model is built with torch (the training extra)")


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory) -> Path:
    return tiny_recycling_dataset(tmp_path_factory.mktemp("rc") / "ds")


def tiny_model(in_channels: int = 1, seed: int = 0):
    from crysplugins.training.nets.reccrysformer import RecCrysFormer

    torch.manual_seed(seed)
    return RecCrysFormer(dict(in_channels=in_channels, conv_channels=4, conv_kernel=3, d_t=16, heads=2, depth=1,
                              d_ff=32, attention="exact", partial=False, decoder_channels=4, decoder_kernel=3,
                              max_patches_per_axis=8)).eval()


class CountingRunner:
    """A real torch model runner that counts the examples it is asked to predict and can be made to fail
    after a number of batches (to interrupt a build half-way)."""

    def __init__(self, fail_after: int | None = None) -> None:
        from crysplugins.training.runner import TorchRunner

        self.inner = TorchRunner(tiny_model(), "tiny-seed0", 1, needs_sequence=False)
        self.identity, self.in_channels = self.inner.identity, 1
        self.examples = 0
        self.calls = 0
        self.fail_after = fail_after

    def __call__(self, x, seq):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt("stopped on purpose")
        self.calls += 1
        self.examples += len(x)
        return self.inner(x, seq)


def test_templates_are_written_per_shard_and_resumed(tiny_dataset: Path):
    from crysplugins.datasets.store import open_dataset
    from crysplugins.datasets.templates import build_templates
    from crysplugins.datasets.template_store import TemplateStore

    ds = open_dataset(tiny_dataset)
    n_total = len(ds.index)
    # interrupted after two model calls (batch 1, chunk 1: two examples done)
    r1 = CountingRunner(fail_after=2)
    with pytest.raises(KeyboardInterrupt):
        build_templates(tiny_dataset, r1, "t", cycles=5, batch_size=1, chunk=1)
    assert r1.examples == 2
    # resumed: the two finished examples are not predicted again
    r2 = CountingRunner()
    s2 = build_templates(tiny_dataset, r2, "t", cycles=5, batch_size=1, chunk=1)
    assert r2.examples == n_total - 2
    assert len(s2["computed"]) == len(ds.shards("train")) + len(ds.shards("test")) and not s2["skipped"]
    root = tiny_dataset / "templates" / "t"
    assert not list((root / "parts").glob("*.npz"))
    mtimes = {p.name: p.stat().st_mtime_ns for p in root.glob("*.npz")}
    # finished: nothing is recomputed
    r3 = CountingRunner()
    s3 = build_templates(tiny_dataset, r3, "t", cycles=5)
    assert r3.examples == 0 and not s3["computed"]
    assert {p.name: p.stat().st_mtime_ns for p in root.glob("*.npz")} == mtimes
    # one shard deleted: only that shard is recomputed
    victim = sorted(root.glob("train-*.npz"))[0]
    victim.unlink()
    r4 = CountingRunner()
    s4 = build_templates(tiny_dataset, r4, "t", cycles=5)
    assert s4["computed"] == [victim.stem]
    assert r4.examples == next(s.n for s in ds.shards("train") if s.path.stem == victim.stem)
    # contents: one entry per example, the refined flag follows the score, templates in [-1, 1]
    store = TemplateStore(tiny_dataset, "t")
    for split in ("train", "test"):
        for shard in ds.shards(split):
            arr = store.shard(shard.path.name)
            assert arr is not None and sorted(arr["rows"].tolist()) == list(range(shard.n))
            assert arr["prediction"].shape == (shard.n, *shard.shape)
            assert np.array_equal(arr["is_refined"], arr["score"] >= REFINED_CC)
            assert arr["refined"].min() >= -1 and arr["refined"].max() <= 1
            assert np.all((arr["phase_error"] >= 0) & (arr["phase_error"] <= 180))
            got = store.lookup(shard.path.name, [0])
            assert got is not None and got["prediction"].shape == (1, *shard.shape)
    # the oracle rule (synthetic data): refined = refined phases within 60 degrees of the truth
    s5 = build_templates(tiny_dataset, CountingRunner(), "oracle", cycles=5, splits=("test",),
                         refined_rule="phase-error", max_phase_error=60.0)
    assert s5["computed"]
    for shard in ds.shards("test"):
        arr = TemplateStore(tiny_dataset, "oracle").shard(shard.path.name)
        assert np.array_equal(arr["is_refined"], arr["refined_phase_error"] < 60.0)
        assert np.array_equal(arr["refiner_refined"], arr["score"] >= REFINED_CC)
    # other settings on the same name are refused
    with pytest.raises(CrysError, match="other settings"):
        build_templates(tiny_dataset, CountingRunner(), "t", cycles=7)


def test_refining_a_good_prediction_gives_a_good_template(tiny_dataset: Path):
    """A prediction = true density + heavy noise: the refined template is closer to the truth."""
    from crysplugins.datasets.store import open_dataset
    from crysplugins.datasets.templates import refine_example

    ds = open_dataset(tiny_dataset)
    shard = ds.shards("test")[0]
    arr = shard.load()
    seqs = {r["id"]: r["sequence"] for r in ds.index}
    ex = str(arr["ids"][0])
    truth = arr["density"][0].astype(np.float32)
    rng = np.random.default_rng(0)
    pred = truth + rng.normal(0, 3 * truth.std(), truth.shape).astype(np.float32)
    amp, _ = ds.test_mtz(ex)
    res = refine_example(pred, truth, tuple(arr["cell"][0]), float(arr["d_min"][0]), seqs[ex],
                         ds.meta["normalisation"]["density"], 50, str(amp))
    assert res["phase_error"] > 40
    assert res["refined_phase_error"] < res["phase_error"] - 20
    assert res["refined_pearson"] > res["pearson"] + 0.3


def test_cli_dataset_templates_with_an_onnx_model(tiny_dataset: Path, tmp_path: Path):
    import subprocess
    import sys

    model = tiny_model()
    onnx_path = tmp_path / "tiny.onnx"
    x = torch.zeros(2, 1, 16, 16, 16)
    torch.onnx.export(model, (x,), str(onnx_path), input_names=["patterson"], output_names=["density"],
                      dynamic_axes={"patterson": {0: "b", 2: "n1", 3: "n2", 4: "n3"}}, dynamo=False)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "crysplugins.cli", "dataset", "templates", "--onnx", str(onnx_path),
           "--data", str(tiny_dataset), "--cycles", "3", "--splits", "test", "--quiet"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["name"] == "tiny" and summary["splits"]["test"]["n"] == sum(s.n for s in
                                                                             _open(tiny_dataset).shards("test"))
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert again.returncode == 0 and json.loads(again.stdout)["computed"] == []
    bad_cmd = [sys.executable, "-m", "crysplugins.cli", "dataset", "templates", "--onnx", str(onnx_path),
               "--data", str(tmp_path / "nowhere"), "--quiet"]
    bad = subprocess.run(bad_cmd, capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode != 0 and "does not exist" in bad.stderr and "Traceback" not in bad.stderr


def _open(path: Path):
    from crysplugins.datasets.store import open_dataset

    return open_dataset(path)
