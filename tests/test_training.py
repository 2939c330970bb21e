"""The shared Trainer (crysplugins/training/loop.py) on a tiny synthetic dataset: metrics.csv, checkpoints
(weights only: a crafted or corrupt file is refused), resume, determinism, the OneCycle schedule, the
`crysplugins train` CLI and DDP with 2 gloo processes."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from crysplugins.errors import CrysError  # noqa: E402
from crysplugins.training.checkpoint import convert_legacy, load_checkpoint  # noqa: E402
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
    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert ckpt.state["epoch"] == 2 and ckpt.model_config["d_t"] == 16


def test_init_from_starts_a_new_run_from_another_runs_weights(dataset, tmp_path):
    run(config(dataset, epochs=1), tmp_path / "base")
    base = load_checkpoint(tmp_path / "base" / "checkpoint.pt")
    # a zero learning rate keeps the loaded weights, so the new run must end with exactly the base weights
    cfg = config(dataset, epochs=1, init_from=str(tmp_path / "base"), lr=0.0, max_lr=0.0, final_lr=0.0,
                 weight_decay=0.0)
    cfg["loss"]["hand_invariant"] = True
    metrics = run(cfg, tmp_path / "ft")
    ft = load_checkpoint(tmp_path / "ft" / "checkpoint.pt")
    assert ft.state["step"] == 4  # a fresh schedule and step count, not a resume
    assert all(torch.equal(base.model[k], ft.model[k]) for k in base.model)
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
    ckpt = load_checkpoint(tmp_path / "r" / "checkpoint.pt")
    assert ckpt.state["step"] == 3
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
    ckpt = load_checkpoint(tmp_path / "ddp" / "checkpoint.pt")
    assert ckpt.state["step"] == 1
    assert ckpt.state["examples"] in (4, 8)  # 2 ranks x (batch of 4, or a remainder batch of 2)


def test_gradient_accumulation_counts_optimizer_steps(dataset, tmp_path):
    run(config(dataset, epochs=1, accumulate=2), tmp_path / "acc")
    ckpt = load_checkpoint(tmp_path / "acc" / "checkpoint.pt")
    assert ckpt.state["batch"] == 0 and ckpt.state["epoch"] == 1
    assert ckpt.state["step"] == 2  # 4 batches, one optimizer step per 2


class _RunsCode:
    """Unpickling this object runs a command: what a crafted checkpoint would do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_crafted_checkpoint_runs_no_code(dataset, tmp_path):
    from crysplugins.cli import main

    run_dir = tmp_path / "evil"
    run_dir.mkdir()
    marker = tmp_path / "code-ran"
    torch.save({"model": {}, "state": _RunsCode(marker)}, run_dir / "checkpoint.pt")
    with pytest.raises(CrysError, match="not a readable crysplugins checkpoint"):
        load_checkpoint(run_dir)
    cfg_path = tmp_path / "cfg.json"
    cfg_path.write_text(json.dumps(config(dataset)))
    assert main(["train", "reccrysformer", "--config", str(cfg_path), "--out", str(run_dir), "--resume",
                 "--quiet"]) != 0
    assert main(["train", "reccrysformer", "--config", str(cfg_path), "--out", str(tmp_path / "ft"),
                 "--init-from", str(run_dir), "--quiet"]) != 0
    assert main(["export", str(run_dir), "--models-dir", str(tmp_path / "models")]) != 0
    assert not marker.exists()
    assert not (tmp_path / "models" / "evil.json").exists()


def test_a_corrupt_checkpoint_is_one_sentence(dataset, tmp_path, capsys):
    from crysplugins.cli import main

    out = tmp_path / "run"
    run(config(dataset, epochs=1), out)
    data = (out / "checkpoint.pt").read_bytes()
    (out / "checkpoint.pt").write_bytes(data[: len(data) // 2])
    capsys.readouterr()
    for argv in (["train", "reccrysformer", "--out", str(out), "--resume", "--quiet"],
                 ["export", str(out), "--models-dir", str(tmp_path / "models")]):
        assert main(argv) != 0
        err = capsys.readouterr().err
        assert "is not a readable crysplugins checkpoint" in err and "Traceback" not in err
        assert err.count("\n") == 1


def test_resume_without_a_checkpoint_says_so(dataset, tmp_path, capsys):
    from crysplugins.cli import main

    cfg_path = tmp_path / "cfg.json"
    cfg_path.write_text(json.dumps(config(dataset)))
    assert main(["train", "reccrysformer", "--config", str(cfg_path), "--out", str(tmp_path / "new"),
                 "--resume", "--quiet"]) != 0
    assert "no checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "new" / "metrics.csv").exists()


def test_a_resumed_run_writes_each_step_once(dataset, tmp_path):
    """A run killed after writing an evaluation but before its checkpoint resumes from the previous
    checkpoint and evaluates that step again: metrics.csv must not hold the step twice."""
    out = tmp_path / "run"
    run(config(dataset, epochs=1), out)
    earlier = (out / "checkpoint.pt").read_bytes()
    run(config(dataset, epochs=2), out, resume=True)
    assert [r["step"] for r in csv.DictReader(open(out / "metrics.csv"))] == ["4", "8"]
    (out / "checkpoint.pt").write_bytes(earlier)  # the step-8 checkpoint was never written
    run(config(dataset, epochs=2), out, resume=True)
    steps = [r["step"] for r in csv.DictReader(open(out / "metrics.csv"))]
    assert steps == ["4", "8"]
    assert load_checkpoint(out).state["step"] == 8


def test_bad_training_settings_are_refused_before_training(dataset, tmp_path, capsys):
    from crysplugins.cli import main

    cfg_path = tmp_path / "cfg.json"
    cfg_path.write_text(json.dumps(config(dataset)))
    for extra, words in ((["--lr", "nan"], "lr must be a number"), (["--set", "train.lr_max=1"], "Unknown training"),
                         (["--set", "model.depth=notjson"], "model settings")):
        assert main(["train", "reccrysformer", "--config", str(cfg_path), "--out", str(tmp_path / "bad"),
                     "--quiet", *extra]) != 0
        err = capsys.readouterr().err
        assert words in err and "Traceback" not in err


def test_an_older_checkpoint_converts(dataset, tmp_path):
    out = tmp_path / "run"
    run(config(dataset, epochs=1), out)
    new = load_checkpoint(out)
    legacy = {"model": new.model, "optimizer": new.optimizer, "scaler": None, "state": new.state,
              "config": new.config, "task_state": new.task_state, "model_config": new.model_config,
              "task": new.task, "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
                                        "python": __import__("random").getstate()}}
    torch.save(legacy, tmp_path / "old.pt")
    with pytest.raises(CrysError):
        load_checkpoint(tmp_path / "old.pt")
    convert_legacy(tmp_path / "old.pt", tmp_path / "converted.pt")
    back = load_checkpoint(tmp_path / "converted.pt")
    assert back.state == new.state and all(torch.equal(back.model[k], new.model[k]) for k in new.model)
    assert back.task == "reccrysformer"
    # in place, from the command line: the original is kept beside it
    from crysplugins.training.checkpoint import main as convert

    assert convert([str(tmp_path / "old.pt")]) == 0
    assert load_checkpoint(tmp_path / "old.pt").state == new.state and (tmp_path / "old.pt.orig").exists()
    (tmp_path / "junk.pt").write_bytes(b"not a pickle")
    assert convert([str(tmp_path / "junk.pt")]) == 1


def test_recycling_and_loss_settings_are_typed(dataset):
    from crysplugins.training.recycling import RecyclingSettings

    assert RecyclingSettings.from_dict({"recycle_from": "runs/a", "refined_prob": 0.7}).refined_prob == 0.7
    for bad, words in (({"recycle_from": "a", "refined_prob": float("nan")}, "probability"),
                       ({"recycle_from": "a", "template_noise": "abc"}, "must be a number"),
                       ({"recycle_from": "a", "refind_prob": 0.5}, "Unknown recycling"),
                       ({}, "--recycle-from")):
        with pytest.raises(CrysError, match=words):
            RecyclingSettings.from_dict(bad)
    cfg = config(dataset)
    cfg["loss"]["c_pp"] = 0.1
    with pytest.raises(CrysError, match="Unknown loss setting"):
        get_task_factory("reccrysformer")(cfg)


def test_a_config_whose_residue_boxes_do_not_fit_the_dataset_is_one_sentence(dataset, tmp_path, capsys):
    from crysplugins.cli import main

    cfg = config(dataset)
    cfg["model"] = {**TINY_MODEL, "partial_box": 16}
    cfg_path = tmp_path / "cfg.json"
    cfg_path.write_text(json.dumps(cfg))
    assert main(["train", "reccrysformer", "--config", str(cfg_path), "--out", str(tmp_path / "r"), "--quiet"]) != 0
    err = capsys.readouterr().err
    assert "model.partial_box=8" in err and "Traceback" not in err


def test_padded_sequences_reach_the_net_unchanged():
    """Fragments shorter than the longest are padded with -1; batches keep them as int64 -1."""
    from crysplugins.training.batching import map_batch

    b = {"patterson": np.zeros((2, 8, 8, 8), np.float16), "density": np.zeros((2, 8, 8, 8), np.float16),
         "sequence_index": np.array([[3, 4, -1, -1], [5, 6, 7, 8]], np.int8)}
    seq = map_batch(b, np.array([0, 1]))["sequence"]
    assert seq.dtype == torch.int64 and seq.tolist() == [[3, 4, -1, -1], [5, 6, 7, 8]]
