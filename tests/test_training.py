"""The shared Trainer (crysplugins/training/loop.py) on a tiny synthetic dataset: metrics.csv, checkpoints,
resume, determinism, the OneCycle schedule, the `crysplugins train` CLI and DDP with 2 gloo processes."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from crysplugins.training.loop import Trainer, onecycle_lr  # noqa: E402
from crysplugins.training.synthetic import make_synthetic_dataset  # noqa: E402
from crysplugins.training.tasks import get_task_factory  # noqa: E402

TINY_MODEL = dict(d_t=16, heads=2, depth=1, d_ff=32, conv_channels=2, partial_channels=2, decoder_channels=2,
                  attention="exact", partial_box=8, max_residues=2, max_patches_per_axis=8, use_fft=True)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_synthetic_dataset(tmp_path_factory.mktemp("syn") / "ds", n_train=12, n_test=4)


def config(data, **train):
    return {"task": "reccrysformer", "data": str(data), "model": TINY_MODEL, "loss": {"c_p": 0.01},
            "train": {"epochs": 2, "batch_size": 4, "log_every": 1, "seed": 3, **train},
            "eval_examples": 4}


def run(cfg, out, resume=False):
    task = get_task_factory("reccrysformer")(cfg)
    return Trainer(task, out, cfg, resume=resume, quiet=True).fit()


def test_same_shape_batches(dataset):
    task = get_task_factory("reccrysformer")(config(dataset))
    batches = task.batches("train", 0, 0, 1)
    assert len(batches) == 4  # 6 examples per shape, batches of 4 -> 4 + 2 per shape
    for b in batches:
        assert b["patterson"].shape[1] == 1 and b["patterson"].shape == b["density"].shape
        assert b["sequence"].dtype == torch.int64 and b["sequence"].shape[1] == 2
    # two ranks get disjoint halves of the same epoch plan
    r0 = task.batches("train", 0, 0, 2).plan
    r1 = task.batches("train", 0, 1, 2).plan
    assert len(r0) == len(r1) == 2
    assert {tuple(i) for _, i in r0}.isdisjoint({tuple(i) for _, i in r1})


def test_trainer_writes_metrics_checkpoint_and_resumes(dataset, tmp_path):
    out = tmp_path / "run"
    metrics = run(config(dataset, epochs=1), out)
    assert {"test_pearson", "test_baseline_pearson", "test_fft_pearson"} <= set(metrics)
    assert (out / "checkpoint.pt").exists() and (out / "config.json").exists()
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert len(rows) == 1 and rows[0]["step"] == "4"
    # resume with more epochs: continues at step 4, ends at step 8
    run(config(dataset, epochs=2), out, resume=True)
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert [r["step"] for r in rows] == ["4", "8"]
    ckpt = torch.load(out / "checkpoint.pt", weights_only=False)
    assert ckpt["state"]["epoch"] == 2 and ckpt["model_config"]["d_t"] == 16


def test_init_from_starts_a_new_run_from_another_runs_weights(dataset, tmp_path):
    from crysplugins.errors import CrysError

    run(config(dataset, epochs=1), tmp_path / "base")
    base = torch.load(tmp_path / "base" / "checkpoint.pt", weights_only=False)
    # a zero learning rate keeps the loaded weights, so the new run must end with exactly the base weights
    cfg = config(dataset, epochs=1, init_from=str(tmp_path / "base"), lr=0.0, max_lr=0.0, final_lr=0.0,
                 weight_decay=0.0)
    cfg["loss"]["hand_invariant"] = True
    metrics = run(cfg, tmp_path / "ft")
    ft = torch.load(tmp_path / "ft" / "checkpoint.pt", weights_only=False)
    assert ft["state"]["step"] == 4  # a fresh schedule and step count, not a resume
    assert all(torch.equal(base["model"][k], ft["model"][k]) for k in base["model"])
    assert 0.0 <= metrics["train_hand_inverted"] <= 1.0
    assert metrics["test_pearson_either_hand"] >= metrics["test_pearson"] - 1e-9
    with pytest.raises(CrysError, match="no checkpoint"):
        run(config(dataset, epochs=1, init_from=str(tmp_path / "missing")), tmp_path / "bad")


def test_runs_are_deterministic(dataset, tmp_path):
    a = run(config(dataset, epochs=1), tmp_path / "a")
    b = run(config(dataset, epochs=1), tmp_path / "b")
    assert a["train_loss"] == b["train_loss"]
    assert a["test_pearson"] == b["test_pearson"]


def test_max_steps_stops_and_checkpoints(dataset, tmp_path):
    run(config(dataset, epochs=5, max_steps=3), tmp_path / "r")
    ckpt = torch.load(tmp_path / "r" / "checkpoint.pt", weights_only=False)
    assert ckpt["state"]["step"] == 3
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["state"]["step"] == 3


def test_onecycle_schedule():
    lrs = [onecycle_lr(p, 5e-4, 1.4e-3, 5e-6, 0.3) for p in (0.0, 0.15, 0.3, 0.65, 1.0)]
    assert lrs[0] == pytest.approx(5e-4) and lrs[2] == pytest.approx(1.4e-3)
    assert lrs[0] < lrs[1] < lrs[2] > lrs[3] > lrs[4]
    assert lrs[4] == pytest.approx(5e-6)


def test_train_cli_with_overrides(dataset, tmp_path):
    from crysplugins.cli import main

    cfg_path = tmp_path / "cfg.json"
    cfg_path.write_text(json.dumps(config(dataset)))
    rc = main(["train", "reccrysformer", "--config", str(cfg_path), "--out", str(tmp_path / "cli"),
               "--max-steps", "2", "--set", "loss.c_p=0.02", "--quiet"])
    assert rc == 0
    saved = json.loads((tmp_path / "cli" / "config.json").read_text())
    assert saved["loss"]["c_p"] == 0.02 and saved["train"]["max_steps"] == 2


def test_unknown_task_is_a_clear_error(tmp_path, capsys):
    from crysplugins.cli import main

    assert main(["train", "no-such-task", "--out", str(tmp_path / "x")]) != 0
    assert "no training task" in capsys.readouterr().err


def test_ddp_two_gloo_processes_one_step(dataset, tmp_path):
    cfg_path = tmp_path / "cfg.json"
    cfg_path.write_text(json.dumps(config(dataset, threads=1)))
    import socket

    with socket.socket() as sock:  # a free port for the rendezvous
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
           "-m", "crysplugins.cli", "train", "reccrysformer", "--config", str(cfg_path),
           "--out", str(tmp_path / "ddp"), "--max-steps", "1"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "world size 2" in proc.stderr
    ckpt = torch.load(tmp_path / "ddp" / "checkpoint.pt", weights_only=False)
    assert ckpt["state"]["step"] == 1
    assert ckpt["state"]["examples"] in (4, 8)  # 2 ranks x (batch of 4, or a remainder batch of 2)


def test_gradient_accumulation_counts_optimizer_steps(dataset, tmp_path):
    run(config(dataset, epochs=1, accumulate=2), tmp_path / "acc")
    ckpt = torch.load(tmp_path / "acc" / "checkpoint.pt", weights_only=False)
    assert ckpt["state"]["batch"] == 0 and ckpt["state"]["epoch"] == 1
    assert ckpt["state"]["step"] == 2  # 4 batches, one optimizer step per 2
