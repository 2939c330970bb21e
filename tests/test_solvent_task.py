"""The 'solvent-unet' training task and the section 2.2 U-net (needs torch)."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from crysplugins.datasets.phasing import prepare_source  # noqa: E402
from crysplugins.datasets.solvent_windows import load_sources, save_sources  # noqa: E402
from crysplugins.training.nets.unet3d import UNet3D, UNet3DEnsemble, count_parameters  # noqa: E402
from crysplugins.training.tasks.solvent_unet import SolventUNetTask as make_task  # noqa: E402
from crysplugins_test_support import blob_structure  # noqa: E402


def test_paper_width_has_about_three_million_parameters():
    assert 3.0e6 < count_parameters(UNet3D(base=24)) < 3.6e6
    out = UNet3D(base=4)(torch.zeros(2, 1, 16, 24, 32))
    assert out.shape == (2, 2, 16, 24, 32)


def test_ensemble_output_is_the_log_of_the_members_mean_probability():
    torch.manual_seed(0)
    members = [UNet3D(base=2).eval(), UNet3D(base=3).eval()]
    ensemble = UNet3DEnsemble(members).eval()
    x = torch.randn(1, 1, 8, 8, 16)
    with torch.no_grad():
        out = ensemble(x)
        mean = (torch.softmax(members[0](x), 1) + torch.softmax(members[1](x), 1)) / 2
    assert out.shape == (1, 2, 8, 8, 16)
    assert torch.allclose(torch.softmax(out, 1), mean, atol=1e-6)
    assert ensemble.config == {"members": [members[0].config, members[1].config]}
    with pytest.raises(ValueError):
        UNet3DEnsemble(members[:1])


def test_task_round_trip(tmp_path):
    st = blob_structure(cell=(30.0, 32.0, 34.0, 90, 90, 90), n=60, seed=0, centre=(6.0, 7.0, 8.0))
    src = prepare_source(st, 3.0, name="blob")
    save_sources([src], tmp_path / "train_sources.npz")
    save_sources([src], tmp_path / "val_sources.npz")
    back = load_sources(tmp_path / "train_sources.npz")[0]
    assert np.array_equal(back.mask, src.mask) and back.spacegroup.hm == src.spacegroup.hm
    task = make_task({"data": str(tmp_path), "base": 2, "window": 16, "batch_size": 2, "steps_per_epoch": 2,
                      "val_windows": 2})
    net = task.build_model({})
    batches = list(task.batches("train", 0))
    assert len(batches) == 2 and batches[0]["x"].shape == (2, 1, 16, 16, 16)
    loss, metrics = task.loss(net, batches[0])
    loss.backward()
    assert np.isfinite(metrics["loss"]) and 0.0 <= metrics["accuracy"] <= 1.0
    ev = task.evaluate(net)
    assert 0.0 <= ev["val_accuracy"] <= 1.0
    assert set(task.card()) >= {"input", "output", "tiling"}
    assert tuple(task.export_example()["x"].shape) == (2, 1, 48, 48, 48)


def test_the_loss_weighs_the_voxels_the_local_statistic_gets_wrong(tmp_path):
    st = blob_structure(cell=(30.0, 32.0, 34.0, 90, 90, 90), n=60, seed=0, centre=(6.0, 7.0, 8.0))
    save_sources([prepare_source(st, 3.0, name="blob")], tmp_path / "train_sources.npz")
    task = make_task({"sources": str(tmp_path / "train_sources.npz"), "base": 2, "window": 16, "batch_size": 2,
                      "steps_per_epoch": 1, "lv_wrong_weight": 3.0})
    batch = task.batches("train", 0)[0]
    assert set(torch.unique(batch["w"]).tolist()) <= {1.0, 4.0}
    net = task.build_model({})
    loss, _ = task.loss(net, batch)
    with torch.no_grad():
        per_voxel = torch.nn.functional.cross_entropy(net(batch["x"]), batch["y"], reduction="none")
    expected = (per_voxel * batch["w"]).sum() / batch["w"].sum()
    assert torch.allclose(loss, expected)
    unweighted, _ = task.loss(net, {"x": batch["x"], "y": batch["y"]})
    assert torch.allclose(unweighted, per_voxel.mean())


def test_train_and_export_through_the_product_commands(tmp_path):
    """`crysplugins train solvent-unet` runs the shared Trainer (window schedule, cosine decay, best.pt);
    `crysplugins export RUN/best.pt` writes the ONNX model and a card with P_U."""
    import json

    from crysplugins.cli import main

    pytest.importorskip("onnxscript")
    st = blob_structure(cell=(30.0, 32.0, 34.0, 90, 90, 90), n=60, seed=0, centre=(6.0, 7.0, 8.0))
    src = prepare_source(st, 3.0, name="blob")
    save_sources([src], tmp_path / "train_sources.npz")
    save_sources([src], tmp_path / "val_sources.npz")
    run = tmp_path / "run"
    sets = {"base": 2, "val_windows": 2, "steps_per_epoch": 3, "n_calibration": 1,
            "window_schedule": [[16, 2, 0.5], [24, 1, 0.5]], "train.schedule": "cosine",
            "train.best_metric": "val_accuracy", "train.weight_decay": 0.0}
    argv = ["train", "solvent-unet", "--data", str(tmp_path), "--out", str(run), "--epochs", "2", "--quiet",
            "--threads", "1"]
    for key, value in sets.items():
        argv += ["--set", f"{key}={json.dumps(value)}"]
    assert main(argv) == 0
    rows = (run / "metrics.csv").read_text().splitlines()
    assert len(rows) == 3 and "val_accuracy" in rows[0]
    assert (run / "best.pt").exists()
    assert main(["export", str(run / "best.pt"), "--name", "tiny-unet", "--models-dir", str(tmp_path / "models")]) == 0
    card = json.loads((tmp_path / "models" / "tiny-unet.json").read_text())
    assert card["task"] == "solvent-unet" and card["architecture"]["type"] == "UNet3D"
    assert card["input"]["name"] == "x" and card["p_u"]["n_crystals"] == 1
    assert card["onnx_parity"]["max_abs_diff"] < 1e-4 and card["training"]["best_val_accuracy"] is not None
