"""Hand (chirality) handling for the RecCrysFormer: the centre inversion, the hand-invariant loss, the
antisymmetric hand classifier (training, ONNX export on several shapes) and its use by the
patterson-density runtime."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from crysplugins.crystal.maps import invert_grid as np_invert  # noqa: E402
from crysplugins.runtime.hand import choose_hand  # noqa: E402
from crysplugins.training.losses import density_loss, invert_through_centre  # noqa: E402
from crysplugins.training.nets.hand_classifier import HandClassifier  # noqa: E402


def _blob_map(shape=(16, 16, 24), seed=0):
    rng = np.random.default_rng(seed)
    from crysplugins.training.synthetic import _blur

    pts = rng.normal(scale=2.0, size=(7, 3)) + np.array(shape) / 2.0
    return _blur(pts, shape)


def test_inversion_is_an_involution_keeps_amplitudes_and_the_centre():
    m = _blob_map()
    inv = np_invert(m)
    assert np.allclose(np_invert(inv), m)
    assert not np.allclose(inv, m)  # a chiral constellation is not centrosymmetric
    assert np.allclose(np.abs(np.fft.fftn(inv)), np.abs(np.fft.fftn(m)), atol=1e-8)
    # the voxel at the cell centre (N/2) maps onto itself; voxel 0 too
    idx = tuple(n // 2 for n in m.shape)
    assert inv[idx] == pytest.approx(m[idx])
    assert inv[1, 2, 3] == pytest.approx(m[m.shape[0] - 1, m.shape[1] - 2, m.shape[2] - 3])
    # numpy (runtime) and torch (training) versions agree
    assert np.allclose(invert_through_centre(torch.from_numpy(m)).numpy(), inv)


def test_hand_invariant_loss_takes_the_better_hand():
    t = torch.from_numpy(np.stack([_blob_map(seed=s) for s in range(3)])).float().unsqueeze(1)
    t = t / t.abs().max()
    pred = invert_through_centre(t)  # a perfect prediction of the other hand
    plain, info_plain = density_loss(pred, t, c_p=0.01)
    inv, info = density_loss(pred, t, c_p=0.01, hand_invariant=True)
    perfect, _ = density_loss(t, t, c_p=0.01, hand_invariant=True)
    assert info["hand_inverted"] == 1.0 and info["pearson"] == pytest.approx(1.0, abs=1e-5)
    assert float(inv) == pytest.approx(float(perfect), abs=1e-6)
    assert float(plain) > float(inv) + 1e-3  # eq. 8 as written punishes the other hand
    assert info_plain["pearson"] < 0.9
    # gradients flow through the chosen hand only
    p = pred.clone().requires_grad_(True)
    loss, _ = density_loss(p, t, c_p=0.01, hand_invariant=True)
    loss.backward()
    assert p.grad is not None and torch.isfinite(p.grad).all()


def test_classifier_is_antisymmetric_on_any_shape():
    torch.manual_seed(0)
    net = HandClassifier().eval()
    for shape in ((16, 16, 16), (8, 16, 24), (24, 32, 16)):
        x = torch.randn(2, 1, *shape)
        with torch.no_grad():
            a, b = net(x), net(invert_through_centre(x))
        assert a.shape == (2,)
        assert torch.allclose(a, -b, atol=1e-6)


@pytest.fixture(scope="module")
def trained_hand(tmp_path_factory):
    """A tiny hand classifier overfitted on a synthetic dataset and exported to ONNX."""
    pytest.importorskip("onnxscript")
    from crysplugins.training.export import export_run
    from crysplugins.training.loop import Trainer
    from crysplugins.training.synthetic import make_synthetic_dataset
    from crysplugins.training.tasks import get_task_factory

    root = tmp_path_factory.mktemp("hand")
    data = make_synthetic_dataset(root / "ds", n_train=8, n_test=4)
    cfg = {"task": "hand-classifier", "data": str(data), "model": {"channels": [8, 8, 16], "strides": [1, 2, 1]},
           "augment": {"blur_sigma": [0, 0], "mix": [0, 0], "noise": [0, 0]}, "eval_examples": 4,
           "train": {"epochs": 40, "batch_size": 4, "lr": 3e-3, "max_lr": 1e-2, "final_lr": 1e-3, "seed": 1,
                     "weight_decay": 0.0}}
    task = get_task_factory("hand-classifier")(cfg)
    metrics = Trainer(task, root / "run", cfg, quiet=True).fit()
    card = export_run(root / "run", name="tiny_hand", models_dir=root / "models")
    return root, task, metrics, card


def test_hand_classifier_learns_the_training_hand(trained_hand):
    root, task, metrics, card = trained_hand
    from crysplugins.training.checkpoint import load_checkpoint
    from crysplugins.training.tasks.hand_classifier import standardise

    ckpt = load_checkpoint(root / "run")
    net = task.build_model()
    net.load_state_dict(ckpt.model)
    net.eval()
    logits = []
    for b in task.maps.split("train").bins.values():
        dens = torch.from_numpy(b["density"].astype(np.float32)).unsqueeze(1)
        with torch.no_grad():
            logits.append(net(standardise(dens)))
    # every stored (training) map is called the stored hand, so every inverted one the other
    assert (torch.cat(logits) < 0).float().mean() == 1.0
    assert card["onnx_parity"]["inputs_checked"] == 4 and card["onnx_parity"]["max_abs_diff"] < 1e-4


def test_runtime_chooses_the_hand_with_the_exported_classifier(trained_hand, monkeypatch):
    root, task, _, _ = trained_hand
    from crysplugins.runtime import models

    monkeypatch.setenv("CRYSPLUGINS_MODELS", str(root / "models"))
    models.clear_cache()
    maps = np.concatenate([b["density"] for b in task.maps.split("train").bins.values()
                           if b["density"].shape[1:] == (16, 16, 16)]).astype(np.float32)[:3]
    wrong = np_invert(maps)
    mixed = np.stack([maps[0], wrong[1], wrong[2]])
    out, inverted, logits = choose_hand(mixed, {"hand_model": "tiny_hand"})
    assert inverted.tolist() == [False, True, True]
    assert np.allclose(out, maps, atol=1e-6)
    assert np.all(np.isfinite(logits))
    # no classifier in the card: the maps come back untouched
    same, inv, lg = choose_hand(mixed, {})
    assert same is mixed or np.array_equal(same, mixed)
    assert not inv.any() and np.isnan(lg).all()
    card = json.loads((root / "models" / "tiny_hand.json").read_text())
    assert card["task"] == "hand-classifier" and card["input"]["normalisation"] == "zscore-map"
    models.clear_cache()


def test_export_records_the_hand_model_and_evaluation_and_plugin_use_it(trained_hand, monkeypatch):
    """A hand-invariant RecCrysFormer exported with --hand-model: the evaluator and the plugin apply it."""
    import gemmi

    from crysplugins.errors import CrysError
    from crysplugins.interface import Request, Sequence
    from crysplugins.plugins.patterson_density import PattersonDensityPredictor
    from crysplugins.runtime import models
    from crysplugins.evaluation.evaluate_dataset import evaluate
    from crysplugins.training.export import export_run
    from crysplugins.training.loop import Trainer
    from crysplugins.training.tasks import get_task_factory

    root, task, _, _ = trained_hand
    data = task.config["data"]
    cfg = {"task": "reccrysformer", "data": data, "loss": {"c_p": 0.01, "hand_invariant": True},
           "model": dict(d_t=16, heads=2, depth=1, d_ff=32, conv_channels=2, partial_channels=2,
                         decoder_channels=2, attention="exact", partial_box=8, max_residues=2,
                         max_patches_per_axis=8, use_fft=True),
           "train": {"epochs": 1, "batch_size": 4, "max_steps": 2}, "eval_examples": 4}
    Trainer(get_task_factory("reccrysformer")(cfg), root / "rcf", cfg, quiet=True).fit()
    with pytest.raises(CrysError, match="not in"):
        export_run(root / "rcf", name="tiny_rcf", models_dir=root / "models", hand_model="missing_hand",
                   shapes=[(16, 16, 16), (16, 16, 24), (8, 16, 24)])
    card = export_run(root / "rcf", name="tiny_rcf", models_dir=root / "models", hand_model="tiny_hand",
                      shapes=[(16, 16, 16), (16, 16, 24), (8, 16, 24)])
    assert card["hand_model"] == "tiny_hand"
    monkeypatch.delenv("CRYSPLUGINS_MODELS", raising=False)
    result = evaluate(root / "models" / "tiny_rcf.json", data, progress=False)
    rows = result["per_example"]
    assert all("hand_logit" in r for r in rows)
    # the summary agrees with the records, and the records with the maps' own inversion
    assert result["hand_accuracy"] == pytest.approx(np.mean([r["pearson"] >= r["pearson_other_hand"] for r in rows]))
    assert result["mean_pearson_better_hand"] == pytest.approx(
        np.mean([max(r["pearson"], r["pearson_other_hand"]) for r in rows]))
    assert all(r["hand_inverted"] == (r["hand_logit"] > 0) for r in rows)
    assert "CRYSPLUGINS_MODELS" not in os.environ  # evaluate() restores the model search path
    with pytest.raises(CrysError, match="RecCrysFormer runs only"):
        export_run(root / "run", name="x", models_dir=root / "models", hand_model="tiny_hand")

    monkeypatch.setenv("CRYSPLUGINS_MODELS", str(root / "models"))
    models.clear_cache()
    patterson = task.maps.split("test").bins[(16, 16, 16)]["patterson"][0].astype(np.float32)
    from crysplugins.interface import CrystalMap

    norm = json.loads((root / "models" / "tiny_rcf.json").read_text())["normalisation"]["patterson"]
    pmap = CrystalMap.from_array(patterson * norm["scale"] + norm["offset"], gemmi.UnitCell(8, 8, 8, 90, 90, 90),
                                 gemmi.SpaceGroup("P 1"), name="patterson")
    pred = PattersonDensityPredictor().predict(Request({"patterson": pmap, "sequence": Sequence("GA"),
                                                        "model": "tiny_rcf"}))
    assert any(m.startswith("Hand chosen by tiny_hand") for m in pred.messages)
    assert isinstance(pred.meta["hand_inverted"], bool) and np.isfinite(pred.meta["hand_logit"])
    with pytest.raises(CrysError, match="not a 'hand-chirality', 'hand-atoms', 'hand-ensemble' or "
                                        "'hand-classifier'"):  # a wrong model
        choose_hand(np.zeros((1, 16, 16, 16), np.float32), {"hand_model": "tiny_rcf"})
    models.clear_cache()
