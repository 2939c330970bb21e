"""`crysplugins export`: ONNX parity with torch on three grid shapes, the model card, the runtime registry
(sha256 check, CRYSPLUGINS_MODELS) and the patterson-density plugin running the exported model."""
from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxscript")

from crysplugins.errors import CrysError  # noqa: E402
from crysplugins.training.checkpoint import load_checkpoint  # noqa: E402
from crysplugins.training.export import export_run  # noqa: E402
from crysplugins.training.loop import Trainer  # noqa: E402
from crysplugins.training.synthetic import make_synthetic_dataset  # noqa: E402
from crysplugins.training.tasks import get_task_factory  # noqa: E402
from crysplugins.training.tasks.reccrysformer import model_from_checkpoint  # noqa: E402

MODEL = dict(d_t=16, heads=2, depth=1, d_ff=32, conv_channels=2, partial_channels=2, decoder_channels=2,
             attention="nystrom", landmarks=4, partial_box=8, max_residues=2, max_patches_per_axis=8,
             use_fft=True)
SHAPES = [(16, 16, 16), (8, 16, 24), (24, 20, 12)]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("exp")
    data = make_synthetic_dataset(root / "ds", n_train=8, n_test=4)
    cfg = {"task": "reccrysformer", "data": str(data), "model": MODEL, "loss": {"c_p": 0.01},
           "train": {"epochs": 1, "batch_size": 4, "max_steps": 2}, "eval_examples": 4}
    run = root / "run"
    Trainer(get_task_factory("reccrysformer")(cfg), run, cfg, quiet=True).fit()
    card = export_run(run, name="tiny", models_dir=root / "models", shapes=SHAPES)
    return root, run, card


def test_onnx_matches_torch_on_three_shapes(exported):
    root, run, card = exported
    import onnxruntime as ort

    checks = card["onnx_parity"]["checks"]
    assert {tuple(c["shape"]) for c in checks} == set(SHAPES)
    assert card["onnx_parity"]["max_abs_diff"] <= 1e-4
    # re-check independently, on inputs that look like data (a centred blob), batch 3
    model = model_from_checkpoint(load_checkpoint(run))
    sess = ort.InferenceSession(str(root / "models" / "tiny.onnx"), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(5)
    for shape in SHAPES:
        x = rng.normal(size=(3, 1, *shape)).astype(np.float32)
        s = rng.integers(0, 20, size=(3, 2)).astype(np.int64)
        with torch.no_grad():
            ref = model(torch.from_numpy(x), torch.from_numpy(s)).numpy()
        got = sess.run(None, {"patterson": x, "sequence": s})[0]
        assert got.shape == (3, 1, *shape)
        assert np.abs(got - ref).max() <= 1e-4


def test_card_contents(exported):
    root, _, card = exported
    on_disk = json.loads((root / "models" / "tiny.json").read_text())
    assert on_disk["sha256"] == card["sha256"]
    for key in ("architecture", "normalisation", "grid", "data", "training", "metrics", "versions"):
        assert on_disk[key], key
    assert on_disk["grid"]["spacing"] == pytest.approx(0.5)
    assert on_disk["architecture"]["attention"] == "nystrom"
    assert on_disk["metrics"]["test_baseline_pearson"] > -1
    assert not (root / "models" / "tiny.onnx.data").exists()  # weights inside the one file


def test_runtime_registry_and_sha256(exported, monkeypatch, tmp_path):
    from crysplugins.runtime import models

    root, _, card = exported
    monkeypatch.setenv("CRYSPLUGINS_MODELS", str(root / "models"))
    models.clear_cache()
    sess, c = models.load_model("tiny")
    assert c.name == "tiny" and [i.name for i in sess.get_inputs()] == ["patterson", "sequence"]
    assert models.load_model("tiny")[0] is sess  # cached
    assert "tiny" in [m.name for m in models.list_models(task="reccrysformer")]
    with pytest.raises(CrysError, match="no model named"):
        models.load_model("does-not-exist")
    # a corrupted copy is refused
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "tiny.json").write_text((root / "models" / "tiny.json").read_text())
    blob = bytearray((root / "models" / "tiny.onnx").read_bytes())
    blob[-10] ^= 0xFF
    (bad / "tiny.onnx").write_bytes(bytes(blob))
    monkeypatch.setenv("CRYSPLUGINS_MODELS", str(bad))
    models.clear_cache()
    with pytest.raises(CrysError, match="sha256"):
        models.load_model("tiny")
    models.clear_cache()


def _synthetic_mtz(path, density, cell, d_min=1.5):
    """Amplitudes of a synthetic density in P1 (gemmi conventions via crystal.fourier)."""
    import gemmi

    from crysplugins.crystal.fourier import FourierGrid, p1_hkl
    from crysplugins.crystal.io import make_mtz, write_mtz

    hkl = p1_hkl(cell, d_min)
    f, _ = FourierGrid(hkl, density.shape, cell.volume).from_map(density)
    mtz = make_mtz(cell, gemmi.SpaceGroup("P 1"), hkl, {"F": ("F", np.abs(f)), "SIGF": ("Q", 0.02 * np.abs(f))})
    write_mtz(mtz, path)
    return hkl, f


def test_plugin_runs_the_exported_model(exported, monkeypatch, tmp_path):
    import gemmi

    from crysplugins.crystal import io
    from crysplugins.interface import Request, Sequence
    from crysplugins.plugins.patterson_density import PattersonDensityPredictor
    from crysplugins.runtime import models

    root, _, card = exported
    monkeypatch.setenv("CRYSPLUGINS_MODELS", str(root / "models"))
    models.clear_cache()
    rng = np.random.default_rng(0)
    from crysplugins.training.synthetic import _blur

    dens = _blur(rng.normal(8, 1.5, size=(8, 3)) * [1, 1, 1.5], (16, 16, 24)) * 0.5
    cell = gemmi.UnitCell(8, 8, 12, 90, 90, 90)
    _synthetic_mtz(tmp_path / "amp.mtz", dens, cell)
    refl = io.read_mtz(tmp_path / "amp.mtz", need=("F",), want=("SIGF",))
    pred = PattersonDensityPredictor().predict(Request({"reflections": refl, "sequence": Sequence("GA"),
                                                        "model": "tiny"}))
    dmap = pred.maps["density"]
    assert dmap.shape == (16, 16, 24) and dmap.spacegroup.number == 1
    out = pred.reflections["phases"]
    assert out.has("PHI") and len(out.values("PHI")) == len(refl.values("F"))
    assert np.allclose(out.values("F"), refl.values("F"))
    # errors: wrong sequence length, non-P1
    with pytest.raises(CrysError, match="exactly 2 residues"):
        PattersonDensityPredictor().predict(Request({"reflections": refl, "sequence": Sequence("GAV"),
                                                     "model": "tiny"}))
    refl.mtz.spacegroup = gemmi.SpaceGroup("P 21 21 21")
    with pytest.raises(CrysError, match="P 1"):
        PattersonDensityPredictor().predict(Request({"reflections": refl, "sequence": Sequence("GA"),
                                                     "model": "tiny"}))
    models.clear_cache()
