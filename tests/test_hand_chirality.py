"""Hand from chirality (issue #5): pseudoscalar features of a map are invariant under proper rotations and
change sign under mirror images, the antisymmetric logistic fit, the hand-chirality model card at runtime
(choose_hand, recycling), its export, and one card averaging nested linear cards."""
from __future__ import annotations

import json
import os
from importlib import resources

import gemmi
import numpy as np
import pytest

from crysplugins.crystal.chirality import SIGMAS, hand_score, n_features, pseudoscalar_features
from crysplugins.crystal.maps import invert_grid
from crysplugins.errors import CrysError
from crysplugins.runtime import models
from crysplugins.runtime.hand import choose_hand, hand_logits
from crysplugins.cli import main
from crysplugins.training.hand_chirality import average_linear_cards, evaluate, fit_logistic, write_average_card

CELL = (19.0, 21.0, 23.0, 100.0, 110.0, 95.0)  # triclinic: catches a fractional-frame mistake
SHAPE = (40, 42, 46)
_Z = {"C": 6.0, "N": 7.0, "O": 8.0, "S": 16.0}


def _residue(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Ideal heavy-atom coordinates (Å) and electron counts of an L-amino acid (shipped monomers.json)."""
    data = json.loads((resources.files("crysplugins") / "data" / "monomers.json").read_text())
    atoms = data["residues"][name]["atoms"]  # [name, element, x, y, z]
    xyz = np.array([a[2:5] for a in atoms], float)
    z = np.array([_Z[a[1]] for a in atoms])
    return xyz - xyz.mean(0), z


def _density(xyz: np.ndarray, z: np.ndarray, sigma: float = 0.8) -> np.ndarray:
    """Gaussian atoms (σ in Å; 0.8 Å looks like a 1.5 Å map) at Cartesian ``xyz`` around the cell centre, on
    the SHAPE grid (P 1)."""
    cell = gemmi.UnitCell(*CELL)
    orth = np.array(cell.orth.mat.tolist())
    frac = np.array(cell.frac.mat.tolist())
    centre = orth @ np.array([0.5, 0.5, 0.5])
    g = np.stack(np.meshgrid(*[np.arange(n) / n for n in SHAPE], indexing="ij"), -1).reshape(-1, 3)
    rho = np.zeros(len(g))
    for p, zz in zip(xyz + centre, z):
        d = g - frac @ p
        d -= np.round(d)
        r2 = ((d @ orth.T) ** 2).sum(1)
        rho += zz * np.exp(-r2 / (2 * sigma ** 2))
    return rho.reshape(SHAPE)


def _cos(a, b):
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


@pytest.fixture(scope="module")
def phe():
    xyz, z = _residue("F")
    return xyz, z, pseudoscalar_features(_density(xyz, z), CELL)


def test_features_are_pseudoscalars_rotation_invariant_and_odd_under_mirroring(phe):
    xyz, z, f = phe
    assert f.shape == (n_features(len(SIGMAS)),) and np.isfinite(f).all()
    rng = np.random.default_rng(3)
    for _ in range(2):
        q, _r = np.linalg.qr(rng.normal(size=(3, 3)))
        q *= np.sign(np.linalg.det(q))  # a proper rotation
        f_rot = pseudoscalar_features(_density(xyz @ q.T, z), CELL)
        assert _cos(f_rot, f) > 0.95  # sums over voxels: invariant up to grid sampling
    mirror = xyz * np.array([-1.0, 1.0, 1.0])  # the D enantiomer, made by a mirror plane, not the grid
    f_mir = pseudoscalar_features(_density(mirror, z), CELL)
    assert _cos(f_mir, f) < -0.95
    # the grid inversion through the cell centre negates the features exactly
    rho = _density(xyz, z)
    assert np.allclose(pseudoscalar_features(invert_grid(rho), CELL), -f, atol=1e-4)  # (cube root of round-off)


def test_a_linear_score_without_intercept_is_antisymmetric_and_the_fit_learns_a_sign():
    rng = np.random.default_rng(0)
    w_true = rng.normal(size=12)
    X = rng.normal(size=(400, 12))
    y = (X @ w_true + 0.3 * rng.normal(size=400) > 0).astype(float)
    w, scale = fit_logistic(X, y, lam=1e-3)
    s = hand_score(X, w, scale)
    assert np.allclose(hand_score(-X, w, scale), -s)
    assert ((s > 0) == (y > 0.5)).mean() > 0.9
    pa, pb = rng.uniform(0.5, 0.9, 400), rng.uniform(0.2, 0.6, 400)
    m = evaluate(s, {"y": y, "pearson": pa, "pearson_inverted": pb})
    assert m["pearson_as_predicted"] == pytest.approx(pa.mean())
    assert m["pearson_better_hand"] >= m["pearson_chosen_hand"] >= min(pa.mean(), pb.mean())


def _card(tmp_path, weights, scale, **extra):
    from crysplugins.crystal.chirality import FEATURE_SET

    card = {"format": models.CARD_FORMAT, "task": "hand-chirality", "name": "toy_hand",
            "feature_set": FEATURE_SET, "sigmas": list(SIGMAS), "weights": list(weights), "scale": list(scale)}
    card.update(extra)
    (tmp_path / "toy_hand.json").write_text(json.dumps(card))


def test_runtime_puts_the_mirror_image_back_on_the_hand_of_the_model(phe, tmp_path, monkeypatch):
    xyz, z, f = phe
    monkeypatch.setenv(models.ENV_MODELS, str(tmp_path))
    _card(tmp_path, f / np.abs(f).sum(), np.ones_like(f))  # a score that calls this L-Phe map "keep"
    rho = _density(xyz, z)
    mir = _density(xyz * np.array([1.0, -1.0, 1.0]), z)
    maps = np.stack([rho, mir]).astype(np.float32)
    out, inverted, logits = choose_hand(maps, {"hand_model": "toy_hand"}, cells=[CELL, CELL])
    assert list(inverted) == [False, True] and logits[0] < 0 < logits[1]
    assert np.array_equal(out[0], maps[0]) and np.array_equal(out[1], invert_grid(maps[1]))
    assert np.allclose(hand_logits(out, "toy_hand", cells=gemmi.UnitCell(*CELL))[1], -logits[1])
    with pytest.raises(CrysError, match="needs the cell"):
        choose_hand(maps, {"hand_model": "toy_hand"})
    # a hand model that reads the density-modified maps: the decision comes from `refined` (any scale: rms
    # units), and is applied to `maps`
    _card(tmp_path, f / np.abs(f).sum(), np.ones_like(f), input="refined")
    with pytest.raises(CrysError, match="density-modified"):
        choose_hand(maps, {"hand_model": "toy_hand"}, cells=[CELL, CELL])
    flat = np.zeros_like(maps)
    out2, inv2, _ = choose_hand(flat + 1.0, {"hand_model": "toy_hand"}, cells=[CELL, CELL], refined=maps[::-1] * 7.0)
    assert list(inv2) == [True, False] and np.array_equal(out2[1], flat[1] + 1.0)


def test_damaged_or_foreign_hand_cards_are_refused(tmp_path, monkeypatch):
    monkeypatch.setenv(models.ENV_MODELS, str(tmp_path))
    m = np.zeros((1,) + SHAPE, np.float32)
    _card(tmp_path, [1.0, 2.0], [1.0, 1.0])
    with pytest.raises(CrysError, match="damaged"):
        choose_hand(m, {"hand_model": "toy_hand"}, cells=[CELL])
    _card(tmp_path, [1.0], [1.0], feature_set="other-v9")
    with pytest.raises(CrysError, match="feature set"):
        choose_hand(m, {"hand_model": "toy_hand"}, cells=[CELL])


def test_export_copies_a_hand_chirality_run_to_models(tmp_path):
    from crysplugins.training.export import export_run

    from crysplugins.crystal.chirality import FEATURE_SET

    run = tmp_path / "run"
    run.mkdir()
    nf = n_features(len(SIGMAS))
    good = {"format": models.CARD_FORMAT, "task": "hand-chirality", "feature_set": FEATURE_SET,
            "sigmas": list(SIGMAS), "weights": [0.1] * nf, "scale": [1.0] * nf, "metrics": {"test": {"n": 3}}}
    (run / "hand_chirality.json").write_text(json.dumps({**good, "weights": [1.0]}))
    with pytest.raises(CrysError, match="not a complete"):
        export_run(run, name="my_hand", models_dir=tmp_path / "models")
    assert not (tmp_path / "models" / "my_hand.json").exists()
    (run / "hand_chirality.json").write_text(json.dumps(good))
    card = export_run(run, name="my_hand", models_dir=tmp_path / "models")
    saved = json.loads((tmp_path / "models" / "my_hand.json").read_text())
    assert saved["name"] == card["name"] == "my_hand" and saved["task"] == "hand-chirality"
    assert "torch" not in saved["versions"]
    with pytest.raises(CrysError, match="RecCrysFormer runs only"):
        export_run(run, name="x", models_dir=tmp_path / "models", hand_model="other")


def test_predictions_with_labels_on_a_built_dataset(tmp_path):
    """The hand model's training examples: a real dataset built from tests/data/dataset, a tiny random
    RecCrysFormer; labels agree with the Pearsons and the features are those of the predictions."""
    torch = pytest.importorskip("torch", reason="the test model is built with torch (the training extra)")
    from pathlib import Path

    from crysplugins.datasets.build import BuildConfig, build
    from crysplugins.training.runner import TorchRunner
    from crysplugins.training.hand_chirality import choose_lambda, predictions_with_labels
    from crysplugins.training.nets.reccrysformer import RecCrysFormer

    data = Path(__file__).parent / "data" / "dataset"
    out = tmp_path / "ds"
    build(BuildConfig(structures=str(data), out=str(out), n_residues=2, overlap=1, d_min=2.0, rate=2.5,
                      max_grid=16, test_fraction=0.3, max_examples=10, shard_size=4, progress=False, partial_box=8))
    torch.manual_seed(0)
    net = RecCrysFormer(dict(in_channels=1, conv_channels=4, conv_kernel=3, d_t=16, heads=2, depth=1, d_ff=32,
                             attention="exact", partial=False, decoder_channels=4, decoder_kernel=3,
                             max_patches_per_axis=8)).eval()
    runner = TorchRunner(net, "tiny", 1, needs_sequence=False)
    d = predictions_with_labels(out, runner, None, "train", 1.0)
    n = len(d["y"])
    assert n >= 3 and d["X"].shape == (n, n_features(len(SIGMAS))) and np.isfinite(d["X"]).all()
    assert np.array_equal(d["y"] > 0.5, d["pearson"] >= d["pearson_inverted"])
    # the first row: the features and the Pearsons of the runner's prediction for that example
    from crysplugins.crystal.metrics import pearson
    from crysplugins.datasets.store import open_dataset

    shard = open_dataset(out).shards("train")[0]
    arr = shard.load()
    assert str(arr["ids"][0]) == d["ids"][0]
    pred = runner(arr["patterson"][:1].astype(np.float32)[:, None], None)[0]
    assert np.allclose(d["X"][0], pseudoscalar_features(pred, arr["cell"][0]), atol=1e-6)
    assert d["pearson"][0] == pytest.approx(pearson(pred, arr["density"][0].astype(np.float64)))
    assert d["pearson_inverted"][0] == pytest.approx(pearson(invert_grid(pred), arr["density"][0].astype(np.float64)))
    # read off the density-modified maps instead: same labels (the prediction's hand), other features
    dr = predictions_with_labels(out, runner, None, "train", 1.0, on="refined", dm_cycles=3)
    assert np.array_equal(dr["y"], d["y"]) and np.isfinite(dr["X"]).all() and not np.allclose(dr["X"], d["X"])
    lam, table = choose_lambda(d, folds=2)
    assert lam in [r["lambda"] for r in table] and all(np.isfinite(r["cv_pearson_chosen_hand"]) for r in table)
    with pytest.raises(CrysError, match="template channel"):
        two = TorchRunner(net, "tiny2", 2, needs_sequence=False)
        predictions_with_labels(out, two, None, "train", 1.0)

    # end to end: a run folder holding the ONNX export, the fit, the cache, the export and the runtime
    import crysplugins.training.hand_chirality as hc
    from crysplugins.training.export import export_run

    run = tmp_path / "pred_run"
    run.mkdir()
    torch.onnx.export(net, (torch.zeros(2, 1, 16, 16, 16),), str(run / "tiny.onnx"), input_names=["patterson"],
                      output_names=["density"], dynamic_axes={"patterson": {0: "b", 2: "n1", 3: "n2", 4: "n3"}},
                      dynamo=False)
    card = hc.train_hand_chirality(out, run, tmp_path / "hand_run", fraction=1.0, test_fraction=1.0)
    assert (tmp_path / "hand_run" / "hand_chirality.json").is_file() and card["task"] == "hand-chirality"
    assert card["metrics"]["test"]["n"] >= 1 and card["training"]["predictor"].startswith("onnx:tiny.onnx")
    assert len(card["weights"]) == n_features(len(SIGMAS))

    def no_recompute(*a, **k):
        raise AssertionError("features recomputed")

    real = hc.predictions_with_labels
    hc.predictions_with_labels = no_recompute
    try:
        again = hc.train_hand_chirality(out, run, tmp_path / "hand_run", fraction=1.0, test_fraction=1.0)
        assert again["weights"] == card["weights"]  # from the cache
        torch.manual_seed(1)
        other = RecCrysFormer(dict(net.config)).eval()  # another model in the same folder: no stale cache
        torch.onnx.export(other, (torch.zeros(2, 1, 16, 16, 16),), str(run / "tiny.onnx"),
                          input_names=["patterson"], output_names=["density"],
                          dynamic_axes={"patterson": {0: "b", 2: "n1", 3: "n2", 4: "n3"}}, dynamo=False)
        with pytest.raises(AssertionError, match="recomputed"):
            hc.train_hand_chirality(out, run, tmp_path / "hand_run", fraction=1.0, test_fraction=1.0)
    finally:
        hc.predictions_with_labels = real
    export_run(tmp_path / "hand_run", name="tiny_hand", models_dir=tmp_path / "models")
    os.environ[models.ENV_MODELS] = str(tmp_path / "models")
    try:
        maps = np.stack([pred, invert_grid(pred)])
        logits = hand_logits(maps, "tiny_hand", cells=arr["cell"][0])
        assert np.isfinite(logits).all() and logits[0] == pytest.approx(-logits[1], rel=1e-6)
    finally:
        del os.environ[models.ENV_MODELS]
    with pytest.raises(CrysError, match="own"):  # never into a network's run folder
        (run / "checkpoint.pt").write_bytes(b"")
        hc.train_hand_chirality(out, run, run)


def test_cli_hand_chirality_needs_a_predictor_run(tmp_path):
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "crysplugins.cli", "train", "hand-chirality", "--data", str(tmp_path),
                        "--out", str(tmp_path / "run")], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "--predictor-run" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "run").exists()


def test_pipeline_features_on_the_shipped_example(monkeypatch):
    """``train hand-chirality --pipeline-mtz``: the features of the map the plugin reads the hand off, before
    the shipped hand model's decision, labelled by the true phases; the same from two worker processes."""
    from pathlib import Path

    from crysplugins.evaluation.compare import examples_from_mtz_dir
    from crysplugins.training.hand_chirality import pipeline_features_with_labels

    monkeypatch.delenv(models.ENV_MODELS, raising=False)
    models.clear_cache()
    card = json.loads((resources.files("crysplugins.models") / "reccrysformer_dipeptide.json").read_text())
    ex = card["example"]
    folder = Path(__file__).resolve().parents[1] / "crysplugins" / "data" / "examples" / "patterson_density"
    examples = examples_from_mtz_dir(folder)
    assert [e.id for e in examples] == [ex["id"]]
    d = pipeline_features_with_labels(examples, "patterson-density")
    assert d["X"].shape == (1, n_features(len(SIGMAS))) and np.isfinite(d["X"]).all()
    # the map before the hand call: the output's other hand when the hand model inverted it
    before, after = (ex["pearson_other_hand"], ex["pearson"]) if ex["hand_inverted"] else (ex["pearson"],
                                                                                          ex["pearson_other_hand"])
    assert d["pearson"][0] == pytest.approx(before, abs=1e-3)
    assert d["pearson_inverted"][0] == pytest.approx(after, abs=1e-3)
    assert d["y"][0] == float(d["pearson"][0] >= d["pearson_inverted"][0])
    twice = pipeline_features_with_labels(examples * 2, "patterson-density", workers=2)
    assert np.allclose(twice["X"], np.concatenate([d["X"], d["X"]]))
    with pytest.raises(CrysError, match="output=refined"):
        pipeline_features_with_labels(examples, "patterson-density:output=prediction")


def _member(tmp_path, name: str, feature_set: str, seed: int, **extra) -> dict:
    """A random linear hand card in ``tmp_path`` (the models folder of the test)."""
    rng = np.random.default_rng(seed)
    n = n_features(len(SIGMAS), feature_set)
    card = {"format": models.CARD_FORMAT, "task": "hand-chirality", "name": name, "input": "refined",
            "feature_set": feature_set, "sigmas": list(SIGMAS), "weights": rng.normal(size=n).tolist(),
            "scale": rng.uniform(0.2, 3.0, n).tolist(), **extra}
    (tmp_path / f"{name}.json").write_text(json.dumps(card))
    return card


def test_an_average_of_nested_linear_cards_is_one_card_with_the_mean_logit(tmp_path, monkeypatch):
    monkeypatch.setenv(models.ENV_MODELS, str(tmp_path))
    _member(tmp_path, "m_v1", "pseudoscalar-v1", 1)
    _member(tmp_path, "m_v2", "pseudoscalar-v2", 2)
    card = write_average_card(["m_v2", "m_v1"], tmp_path / "run" / "avg_hand")
    saved = json.loads((tmp_path / "run" / "avg_hand" / "hand_chirality.json").read_text())
    assert saved == card and card["feature_set"] == "pseudoscalar-v2" and card["head"] == "linear"
    assert [m["name"] for m in card["training"]["ensemble_of"]] == ["m_v2", "m_v1"]
    (tmp_path / "avg_hand.json").write_text(json.dumps(card))
    rng = np.random.default_rng(0)
    for shape, cell in (((8, 10, 12), (7.0, 9.0, 11.0, 95.0, 105.0, 80.0)),
                        ((12, 8, 10), (10.0, 7.5, 9.0, 90.0, 90.0, 120.0))):
        maps = rng.normal(size=(2,) + shape)
        a, b, avg = (hand_logits(maps, n, cells=[cell, cell]) for n in ("m_v1", "m_v2", "avg_hand"))
        assert np.allclose(avg, (a + b) / 2, rtol=1e-9, atol=1e-9 * np.abs(a).max())
        assert not np.allclose(avg, a) and not np.allclose(avg, b)


def test_cards_that_do_not_nest_into_one_linear_card_are_refused(tmp_path):
    v1, v2 = _member(tmp_path, "a", "pseudoscalar-v1", 1), _member(tmp_path, "b", "pseudoscalar-v2", 2)
    blurs = _member(tmp_path, "c", "pseudoscalar-v1", 3, sigmas=[s + 0.1 for s in SIGMAS])
    other_input = _member(tmp_path, "d", "pseudoscalar-v2", 4, input="prediction")
    odd = _member(tmp_path, "e", "pseudoscalar-v2", 5, head="odd-mlp", weights=[1.0] * 5,
                  hidden=[[0.1] * 5] * n_features(len(SIGMAS), "pseudoscalar-v2"))
    for bad in ([v2, blurs], [v1, other_input]):
        with pytest.raises(CrysError, match="do not nest"):
            average_linear_cards(bad, "x")
    with pytest.raises(CrysError, match="not a linear"):
        average_linear_cards([v2, odd], "x")
    with pytest.raises(CrysError, match="two or more"):
        average_linear_cards([v2], "x")


def test_average_with_a_fitting_mode_is_refused_in_one_sentence(tmp_path, capsys):
    code = main(["train", "hand-chirality", "--average", "fragment_hand,dipeptide_hand", "--true-maps",
                 "--out", str(tmp_path / "avg")])
    err = capsys.readouterr().err
    assert code != 0 and "--average fits nothing" in err and "Traceback" not in err
    assert not (tmp_path / "avg").exists()


def test_the_shipped_dipeptide_hand_is_the_mean_of_its_members(monkeypatch):
    monkeypatch.delenv(models.ENV_MODELS, raising=False)
    members = [m["name"] for m in models.find_card("dipeptide_hand")["training"]["ensemble_of"]]
    assert sorted(members) == ["fragment_hand", "reccrysformer_dipeptide_recycled_hand"]
    m = np.random.default_rng(3).normal(size=(1, 8, 10, 12))
    cell = (8.0, 12.0, 12.0, 110.0, 120.0, 90.0)
    logits = [hand_logits(m, n, cells=[cell])[0] for n in members]
    assert hand_logits(m, "dipeptide_hand", cells=[cell])[0] == pytest.approx(np.mean(logits), rel=1e-9)


# ------------------------------------------------------------------ the gated head: per-voxel chirality
def _gated_card(tmp_path, hidden: int = 4, seed: int = 0, **extra) -> dict:
    from crysplugins.crystal.chirality import VOXEL_FEATURE_SET, VOXEL_COUNT, VOXEL_SIGMAS, n_voxel_fields

    n_s, n_p = n_voxel_fields(len(VOXEL_SIGMAS))
    rng = np.random.default_rng(seed)
    card = {"format": models.CARD_FORMAT, "task": "hand-chirality", "name": "toy_gated", "input": "refined",
            "feature_set": VOXEL_FEATURE_SET, "head": "gated", "sigmas": list(VOXEL_SIGMAS),
            "voxel_count": VOXEL_COUNT, "scalar_mean": [0.0] * n_s, "scalar_scale": [1.0] * n_s,
            "scale": [1.0] * n_p, "hidden_weights": rng.normal(size=(n_s + n_p, hidden)).tolist(),
            "hidden_bias": rng.normal(size=hidden).tolist(), "gate_weights": rng.normal(size=(hidden, n_p)).tolist(),
            "gate_bias": rng.normal(size=n_p).tolist()}
    card.update(extra)
    (tmp_path / "toy_gated.json").write_text(json.dumps(card))
    return card


def test_voxel_fields_keep_scalars_and_negate_pseudoscalars_under_inversion(phe):
    from crysplugins.crystal.chirality import VOXEL_COUNT, n_voxel_fields, voxel_fields

    xyz, z, _ = phe
    rho = _density(xyz, z)
    s, p = voxel_fields(rho, CELL)
    assert s.shape == (VOXEL_COUNT, n_voxel_fields(5)[0]) and p.shape[1] == n_voxel_fields(5)[1]
    s_inv, p_inv = voxel_fields(invert_grid(rho), CELL)  # the grid inversion maps voxels onto voxels
    order, order_inv = np.lexsort(s.T[::-1]), np.lexsort(s_inv.T[::-1])
    assert np.allclose(s[order], s_inv[order_inv], atol=1e-5)
    assert np.allclose(p[order], -p_inv[order_inv], atol=1e-3)


def test_a_gated_head_is_antisymmetric_rotation_invariant_and_refuses_a_damaged_card(phe, tmp_path, monkeypatch):
    xyz, z, _ = phe
    monkeypatch.setenv(models.ENV_MODELS, str(tmp_path))
    _gated_card(tmp_path, voxel_count=6000)  # on this fine grid, 6000 voxels hold the whole residue
    rho = _density(xyz, z)
    rng = np.random.default_rng(5)
    q, _r = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.linalg.det(q))
    maps = np.stack([rho, invert_grid(rho), _density(xyz @ q.T, z), _density(xyz * np.array([-1.0, 1, 1]), z)])
    logit = hand_logits(maps, "toy_gated", cells=CELL)
    assert abs(logit[0]) > 1e-3 and logit[1] == pytest.approx(-logit[0], rel=1e-6, abs=1e-9)
    assert np.sign(logit[2]) == np.sign(logit[0]) and abs(logit[2] - logit[0]) < 0.2 * abs(logit[0])
    assert np.sign(logit[3]) == -np.sign(logit[0])  # the D enantiomer from a mirror plane, not the grid
    _gated_card(tmp_path, gate_bias=[0.0, 1.0])
    with pytest.raises(CrysError, match="damaged"):
        hand_logits(maps[:1], "toy_gated", cells=CELL)


def test_the_gated_fit_learns_a_planted_sign_and_the_cli_writes_a_card_the_runtime_reads(tmp_path, monkeypatch, capsys):
    """fit_gated on voxel fields whose pseudoscalars carry the hand where one scalar is high; then the whole
    `train hand-chirality --true-maps --head gated` path on a dataset built from tests/data/dataset, its export and
    the runtime reading the card (antisymmetric on the dataset's own maps)."""
    pytest.importorskip("torch", reason="the gated head is fitted with torch (the training extra)")
    from pathlib import Path

    from crysplugins.crystal.chirality import n_voxel_fields
    from crysplugins.datasets.build import BuildConfig, build
    from crysplugins.datasets.store import open_dataset
    from crysplugins.runtime.hand import gated_score
    from crysplugins.training.export import export_run
    from crysplugins.training.hand_gated import fit_gated

    n_s, n_p = n_voxel_fields(5)
    rng = np.random.default_rng(0)
    S = rng.normal(size=(300, 64, n_s)).astype(np.float32)
    P = rng.normal(size=(300, 64, n_p)).astype(np.float32)
    P[..., 3] = np.abs(P[..., 3]) * np.where(S[..., 0] > 0, 1.0, -0.2)  # the hand shows where scalar 0 is high
    params = fit_gated(S, P, hidden=8, weight_decay=1e-4, epochs=30)
    score = gated_score(S, P, params)
    assert (score > 0).mean() > 0.95 and np.allclose(gated_score(S, -P, params), -score)

    out = tmp_path / "ds"
    build(BuildConfig(structures=str(Path(__file__).parent / "data" / "dataset"), out=str(out), n_residues=2,
                      overlap=1, d_min=2.0, rate=2.5, max_grid=16, test_fraction=0.3, max_examples=10, shard_size=4,
                      progress=False, partial_box=8))
    run = tmp_path / "gated_run"
    assert main(["train", "hand-chirality", "--true-maps", "--head", "gated", "--data", str(out), "--every", "1",
                 "--test-every", "1", "--phase-errors", "0,50", "--out", str(run), "--quiet"]) == 0
    card = json.loads((run / "hand_chirality.json").read_text())
    assert card["head"] == "gated" and card["metrics"]["test"]["phase_error_0"]["n"] >= 1
    assert card["training"]["phase_errors"] == [0.0, 50.0] and "phase_error_50" in card["metrics"]["test"]
    assert main(["train", "hand-chirality", "--true-maps", "--head", "gated", "--data", str(out),
                 "--phase-errors", "0,95", "--out", str(tmp_path / "refused"), "--quiet"]) != 0
    assert "--phase-errors" in capsys.readouterr().err and not (tmp_path / "refused").exists()
    assert 0 <= card["training"]["validation"]["val_accuracy"] <= 1
    export_run(run, name="tiny_gated", models_dir=tmp_path / "models")
    monkeypatch.setenv(models.ENV_MODELS, str(tmp_path / "models"))
    models.clear_cache()
    arr = open_dataset(out).shards("test")[0].load()
    rho, cell = arr["density"][0].astype(np.float64), arr["cell"][0]
    logits = hand_logits(np.stack([rho, invert_grid(rho)]), "tiny_gated", cells=cell)
    assert np.isfinite(logits).all() and logits[1] == pytest.approx(-logits[0], rel=1e-6, abs=1e-9)
