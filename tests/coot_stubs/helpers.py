"""Shared set-up of the Coot script tests: the test plugin on the child's PYTHONPATH, loading the script.

Imported by the tests through :func:`load_helpers` (the tests folder is not a package).
"""
from __future__ import annotations

import importlib.util
import runpy
import shlex
import shutil
import sys
from pathlib import Path

STUBS = Path(__file__).resolve().parent
TESTS = STUBS.parent
REPO = TESTS.parent
SCRIPT = REPO / "coot_scripts" / "crysplugins_coot.py"
MAP = TESTS / "data" / "coot_map.ccp4"
MTZ = TESTS / "data" / "coot_data.mtz"
PLUGIN_MODULE = "crysplugins_coot_testplugin"


def load_module(name: str, path: Path):
    """Import a file as module ``name`` (registered in sys.modules, as dataclasses need)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def fake_coot():
    return load_module("crysplugins_tests_fake_coot", STUBS / "fake_coot.py")


def make_plugin_dir(root: Path) -> Path:
    """A folder holding the test plugin module and a dist-info declaring its ``crysplugins`` entry point."""
    folder = root / "site"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(STUBS / f"{PLUGIN_MODULE}.py", folder)
    info = folder / "crysplugins_coot_testplugin-0.1.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: crysplugins-coot-testplugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[crysplugins]\ncoot-test = {PLUGIN_MODULE}\n")
    return folder


def crysplugins_command() -> list[str]:
    from crysplugins.coot_install import find_command

    return find_command()


def setup_env(monkeypatch, tmp_path: Path, only_test_plugin: bool = True) -> Path:
    """Child environment: the test plugin visible, the crysplugins command of this environment."""
    folder = make_plugin_dir(tmp_path)
    monkeypatch.setenv("CRYSPLUGINS_PYTHONPATH", str(folder))
    monkeypatch.setenv("CRYSPLUGINS_COMMAND", shlex.join(crysplugins_command()))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    if only_test_plugin:
        monkeypatch.setenv("CRYSPLUGINS_PLUGINS", "coot-test")
    else:
        monkeypatch.delenv("CRYSPLUGINS_PLUGINS", raising=False)
    monkeypatch.delenv("CRYSPLUGINS_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    monkeypatch.setattr(sys, "_crysplugins_coot", None, raising=False)
    return folder


def run_script(path: Path = SCRIPT, namespace: dict | None = None) -> dict:
    """Run the Coot script as Coot does (its globals returned); the app object is ``crysplugins_coot``."""
    return runpy.run_path(str(path), init_globals=dict(namespace or {}), run_name="crysplugins_coot_under_test")
