"""``crysplugins train reccrysformer --recycle-from RUN_DIR``: a whole (tiny) recycling round through the
real command line — initial run, ``dataset templates`` from its torch checkpoint, recycling run."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from crysplugins_test_support import tiny_recycling_dataset

torch = pytest.importorskip("torch", reason="training needs torch (the training extra)")

from crysplugins.training.checkpoint import load_checkpoint  # noqa: E402


def cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "crysplugins.cli", *args], capture_output=True, text=True,
                          env=env, timeout=timeout)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return tiny_recycling_dataset(tmp_path_factory.mktemp("rct") / "ds")


def test_recycling_round_through_the_cli(dataset: Path, tmp_path: Path):
    run0, run1 = tmp_path / "initial", tmp_path / "recycled"
    p = cli("train", "reccrysformer", "--config", "reccrysformer_tiny", "--data", str(dataset), "--out", str(run0),
            "--max-steps", "2", "--quiet")
    assert p.returncode == 0, p.stderr
    p = cli("dataset", "templates", str(run0), "--data", str(dataset), "--cycles", "3", "--quiet")
    assert p.returncode == 0, p.stderr
    summary = json.loads(p.stdout)
    assert summary["name"] == "initial" and summary["splits"]["train"]["n"] > 0
    p = cli("train", "reccrysformer", "--config", "reccrysformer_tiny", "--data", str(dataset), "--out", str(run1),
            "--max-steps", "2", "--recycle-from", str(run0), "--refined-prob", "1/6", "--template-noise", "0.05",
            "--quiet")
    assert p.returncode == 0, p.stderr
    ckpt, prev = load_checkpoint(run1), load_checkpoint(run0)
    w, w0 = ckpt.model["embed.conv.weight"], prev.model["embed.conv.weight"]
    assert w.shape[1] == 2 and w0.shape[1] == 1 and w.shape[0] == w0.shape[0]
    assert ckpt.model_config["in_channels"] == 2
    rec = ckpt.task_state["recycling"]
    assert rec["transfer_report"]["first_conv"]["fraction_transferred"] == 0.5
    assert rec["refined_prob"] == pytest.approx(1 / 6) and rec["template_noise"] == 0.05
    assert rec["templates"] == "initial"
    config = json.loads((run1 / "config.json").read_text())
    assert config["recycling"]["recycle_from"] == str(run0)
    with open(run1 / "metrics.csv", newline="") as fh:
        last = list(csv.DictReader(fh))[-1]
    assert "test_pearson_not_refined" in last and float(last["test_n"]) > 0
    # the recycled (two-channel) model makes templates too, given the template set it takes
    p = cli("dataset", "templates", str(run1), "--data", str(dataset), "--cycles", "3", "--splits", "test",
            "--input-templates", "initial", "--quiet")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["splits"]["test"]["n"] == summary["splits"]["test"]["n"]
    # exported, its card says how the template channel was trained and which model it follows
    p = cli("export", str(run1), "--models-dir", str(tmp_path / "models"), "--shapes", "8x8x8,16x16x16")
    assert p.returncode == 0, p.stderr
    card = json.loads((tmp_path / "models" / "recycled.json").read_text())
    assert card["recycling"]["base_model"] == "initial" and card["recycling"]["templates"] == "initial"
    assert card["inputs"][0]["shape"][1] == 2 and card["onnx_parity"]["max_abs_diff"] <= 1e-4


def test_recycle_from_a_missing_run_is_one_clear_error(dataset: Path, tmp_path: Path):
    p = cli("train", "reccrysformer", "--config", "reccrysformer_tiny", "--data", str(dataset),
            "--out", str(tmp_path / "r"), "--max-steps", "1", "--recycle-from", str(tmp_path / "nowhere"), "--quiet")
    assert p.returncode != 0
    assert "no checkpoint.pt" in p.stderr and "Traceback" not in p.stderr
    p = cli("train", "reccrysformer", "--config", "reccrysformer_tiny", "--data", str(dataset),
            "--out", str(tmp_path / "r"), "--recycle-from", str(tmp_path), "--refined-prob", "2/0", "--quiet")
    assert p.returncode != 0 and "probability" in p.stderr


def test_template_hand_flip_inverts_training_templates_only():
    np = pytest.importorskip("numpy")
    pytest.importorskip("torch")
    from crysplugins.crystal.maps import invert_grid
    from crysplugins.training.recycling import template_inputs

    rng0 = np.random.default_rng(0)
    patt = rng0.normal(size=(6, 8, 8, 12)).astype(np.float32)
    pred = rng0.normal(size=(6, 8, 8, 12)).astype(np.float32)
    tpl = {"prediction": pred, "refined": pred + 1.0, "is_refined": np.zeros(6, bool)}
    x, _ = template_inputs(patt, tpl, 1.0, 0.0, np.random.default_rng(1), hand_flip=1.0)
    assert np.allclose(x[:, 1], invert_grid(pred)) and np.allclose(x[:, 0], patt)
    x, _ = template_inputs(patt, tpl, 1.0, 0.0, np.random.default_rng(1), hand_flip=0.5)
    flipped = [np.allclose(x[i, 1], invert_grid(pred[i])) for i in range(6)]
    kept = [np.allclose(x[i, 1], pred[i]) for i in range(6)]
    assert all(f != k for f, k in zip(flipped, kept)) and 0 < sum(flipped) < 6
    x, _ = template_inputs(patt, tpl, 1.0, 0.0, None, hand_flip=1.0)  # evaluation: never flipped
    assert np.allclose(x[:, 1], pred)
