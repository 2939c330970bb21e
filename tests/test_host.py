"""The plugin host: third-party discovery through entry points, broken plugins, environment variables.

Third-party plugins here are real installed distributions: the example package
``examples/third_party_plugin`` is built and pip-installed into a temporary ``--target`` folder, and the
broken ones are written as installed distributions (module + ``.dist-info`` with ``entry_points.txt``)
into a temporary folder.  The folders go on ``sys.path`` (in-process) or ``PYTHONPATH`` (subprocess).
"""
from __future__ import annotations

import json
import uuid

import gemmi
import numpy as np
import pytest

from crysplugins.crystal import io
from crysplugins.host import BUILTIN_DISTRIBUTION, Host
from crysplugins.interface import CrystalMap, Request


def _small_map(seed: int = 0) -> CrystalMap:
    rng = np.random.default_rng(seed)
    return CrystalMap.from_array(rng.normal(0.3, 2.0, size=(10, 12, 14)),
                                 gemmi.UnitCell(20, 24, 28, 90, 95, 90), "P 1 21 1", name="small")


def _clear_env(monkeypatch):
    monkeypatch.delenv("CRYSPLUGINS_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    monkeypatch.delenv("CRYSPLUGINS_PLUGINS", raising=False)


# ------------------------------------------------------------------ an installed third-party plugin

def test_installed_plugin_is_found_and_usable(example_plugin_target, monkeypatch):
    _clear_env(monkeypatch)
    monkeypatch.syspath_prepend(str(example_plugin_target))
    host = Host()
    entry = host.predictors["map-statistics"]
    assert entry.plugin == "mapstats"
    assert entry.distribution == "crysplugins-mapstats 0.1.0"
    assert host.predictors["solvent-content"].distribution == BUILTIN_DISTRIBUTION
    cmap = _small_map()
    out = entry.predictor.predict(Request(inputs={"map": cmap}))
    values = cmap.array.astype(np.float64)
    assert out.scalars["mean"].value == pytest.approx(values.mean())
    assert out.scalars["rms"].value == pytest.approx(values.std())
    assert out.scalars["max"].value == pytest.approx(values.max())
    scaled = out.maps["sigma_scaled"]
    assert scaled.same_grid(cmap) and scaled.spacegroup.hm == "P 1 21 1"
    np.testing.assert_allclose(scaled.array, (values - values.mean()) / values.std(), atol=1e-5)


def test_installed_plugin_in_cli_list_and_predict(example_plugin_target, tmp_path, cli):
    listing = cli("list", "--json", pythonpath=example_plugin_target)
    assert listing.returncode == 0, listing.stderr
    rows = {r["name"]: r for r in json.loads(listing.stdout)["predictors"]}
    assert rows["map-statistics"]["distribution"] == "crysplugins-mapstats 0.1.0"
    assert rows["map-statistics"]["plugin"] == "mapstats"
    assert "solvent-content" in rows

    text = cli("list", pythonpath=example_plugin_target)
    assert "map-statistics" in text.stdout and "crysplugins-mapstats 0.1.0" in text.stdout

    without = cli("list", "--json")  # not on the path: not found (discovery is by entry point)
    assert "map-statistics" not in {r["name"] for r in json.loads(without.stdout)["predictors"]}

    cmap = _small_map(1)
    map_path = io.write_map(cmap, tmp_path / "in.ccp4")
    out_dir = tmp_path / "out"
    proc = cli("predict", "map-statistics", "--map", str(map_path), "--out", str(out_dir), "--json",
                   pythonpath=example_plugin_target)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    values = cmap.array.astype(np.float64)
    assert result["scalars"]["rms"]["value"] == pytest.approx(values.std(), rel=1e-6)
    written = io.read_map(out_dir / "sigma_scaled.ccp4")
    np.testing.assert_allclose(written.array, (values - values.mean()) / values.std(), atol=1e-5)
    assert (out_dir / "result.json").exists()


# ------------------------------------------------------------------ broken plugins

GOOD = '''
from crysplugins.hookspecs import hookimpl
from crysplugins.interface import OutputSpec, Kind, Prediction, Scalar

class Answer:
    name = "answer-{tag}"
    version = "1.0"
    summary = "always 42"
    inputs = ()
    outputs = (OutputSpec("answer", Kind.SCALAR, "the answer"),)
    def predict(self, request):
        return Prediction(scalars={{"answer": Scalar(42.0)}})

@hookimpl
def register_predictors(register):
    register(Answer())
'''

BROKEN = {
    # entry-point name: (module source, expected words in the reported error)
    "import": ("import crysplugins_no_such_module_{tag}\n", "import failed: ModuleNotFoundError"),
    "invalid": ('''
from crysplugins.hookspecs import hookimpl
class NotAPredictor:
    name = "bad name!"
@hookimpl
def register_predictors(register):
    register(NotAPredictor())
''', "invalid predictor 'bad name!'"),
    "hookname": ('''
from crysplugins.hookspecs import hookimpl
@hookimpl
def register_predictor(register):   # typo: not a hook the host specifies
    pass
''', "invalid hook implementation"),
    "argname": ('''
from crysplugins.hookspecs import hookimpl
@hookimpl
def register_predictors(reg, extra):   # arguments the spec does not have
    pass
''', "registration failed"),
    "raises": ('''
from crysplugins.hookspecs import hookimpl
@hookimpl
def register_predictors(register):
    raise RuntimeError("boom in the plugin")
''', "register_predictors raised: RuntimeError: boom in the plugin"),
    "duplicate": ('''
from crysplugins.hookspecs import hookimpl
from crysplugins.plugins.solvent_content import SolventContentPredictor
@hookimpl
def register_predictors(register):
    register(SolventContentPredictor())   # same name as the built-in
''', "'solvent-content' is already registered"),
}


@pytest.fixture
def broken_dist(tmp_path, make_dist):
    """One installed distribution 'crysplugins-broken 0.3' with a good and six broken entry points."""
    tag = uuid.uuid4().hex[:8]
    modules = {f"brk_{kind}_{tag}.py": src.format(tag=tag) for kind, (src, _) in BROKEN.items()}
    modules[f"brk_good_{tag}.py"] = GOOD.format(tag=tag)
    eps = {f"brk_{kind}": f"brk_{kind}_{tag}" for kind in BROKEN}
    eps["brk_good"] = f"brk_good_{tag}"
    eps["brk_attr"] = f"brk_good_{tag}:no_such_attribute"
    root = make_dist(tmp_path / "site", "crysplugins-broken", "0.3", modules, eps)
    return root, tag


def test_broken_plugins_are_reported_and_the_rest_works(broken_dist, monkeypatch):
    root, tag = broken_dist
    _clear_env(monkeypatch)
    monkeypatch.syspath_prepend(str(root))
    host = Host()
    failures = {f.plugin: f for f in host.failures if f.plugin.startswith("brk_")}
    for kind, (_, expected) in BROKEN.items():
        f = failures.get(f"brk_{kind}")
        assert f is not None, f"brk_{kind} not reported; failures: {host.failures}"
        assert f.distribution == "crysplugins-broken 0.3"
        assert expected in f.error, (kind, f.error)
    assert "AttributeError" in failures["brk_attr"].error
    assert set(failures) == {f"brk_{k}" for k in BROKEN} | {"brk_attr"}
    # the good plugin of the same distribution and the built-ins still work
    good = host.get(f"answer-{tag}")
    assert good.predict(Request()).scalars["answer"].value == 42.0
    assert host.predictors["solvent-content"].distribution == BUILTIN_DISTRIBUTION
    pred = host.get("solvent-content")
    out = pred.predict(Request(inputs=pred.example_inputs()))
    assert out.scalars["most_probable_copies"].value == 1


def test_broken_plugins_in_cli(broken_dist, tmp_path, cli):
    root, tag = broken_dist
    proc = cli("list", pythonpath=root)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "FAILED plugin brk_import (crysplugins-broken 0.3): import failed: ModuleNotFoundError" in proc.stdout
    assert "FAILED plugin brk_raises (crysplugins-broken 0.3)" in proc.stdout
    assert f"answer-{tag}" in proc.stdout and "solvent-content" in proc.stdout
    listing = json.loads(cli("list", "--json", pythonpath=root).stdout)
    assert {f["plugin"] for f in listing["failures"]} >= {"brk_import", "brk_invalid", "brk_hookname",
                                                          "brk_argname", "brk_raises", "brk_duplicate"}
    assert all(f["status"] == "failed" and f["error"] for f in listing["failures"])
    run = cli("predict", "solvent-content", "--cell", "34.321 45.508 98.912 90 90 90", "--spacegroup", "19",
                  "--molecular-weight", "18000", "--resolution", "1.8", "--json", pythonpath=root)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["scalars"]["most_probable_copies"]["value"] == 1


# ------------------------------------------------------------------ environment variables

def test_disable_autoload(example_plugin_target, monkeypatch):
    _clear_env(monkeypatch)
    monkeypatch.syspath_prepend(str(example_plugin_target))
    assert "map-statistics" in Host().predictors
    monkeypatch.setenv("CRYSPLUGINS_DISABLE_PLUGIN_AUTOLOAD", "1")
    host = Host()
    assert "map-statistics" not in host.predictors
    assert "solvent-content" in host.predictors  # built-ins are not autoloaded entry points
    assert not [f for f in host.failures if f.plugin == "mapstats"]


def test_only_listed_plugins(example_plugin_target, broken_dist, monkeypatch):
    root, _ = broken_dist
    _clear_env(monkeypatch)
    monkeypatch.syspath_prepend(str(example_plugin_target))
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setenv("CRYSPLUGINS_PLUGINS", "mapstats")
    host = Host()
    assert host.names() == ["map-statistics"]
    assert host.failures == []  # the broken ones were never loaded
    monkeypatch.setenv("CRYSPLUGINS_PLUGINS", "solvent_content, mapstats")
    assert Host().names() == ["map-statistics", "solvent-content"]


def test_env_vars_in_cli(example_plugin_target, cli):
    only = cli("list", "--json", pythonpath=example_plugin_target, CRYSPLUGINS_PLUGINS="solvent_content")
    assert [r["name"] for r in json.loads(only.stdout)["predictors"]] == ["solvent-content"]
    off = cli("list", "--json", pythonpath=example_plugin_target, CRYSPLUGINS_DISABLE_PLUGIN_AUTOLOAD="1")
    names = {r["name"] for r in json.loads(off.stdout)["predictors"]}
    assert "map-statistics" not in names and "solvent-content" in names
