"""Shared pytest helpers.

* :func:`make_plugin_dist` writes a real (tiny) installed distribution into a folder: module files plus a
  ``<name>-<version>.dist-info`` with ``METADATA`` and ``entry_points.txt``, exactly what pip leaves in
  site-packages, so ``importlib.metadata`` finds its ``crysplugins`` entry points once the folder is on
  ``sys.path`` (or ``PYTHONPATH`` for a subprocess).
* ``example_plugin_target`` (session scope) pip-installs the example package ``examples/third_party_plugin``
  into a temporary ``--target`` folder (built from a copy, so the source tree stays clean).
* :func:`run_cli` runs ``python -m crysplugins.cli ...`` in a subprocess.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Mapping

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_PLUGIN = REPO / "examples" / "third_party_plugin"


def _register_module(name: str, path: Path) -> None:
    """Import ``path`` as module ``name`` so test modules can ``import name`` (importlib import mode)."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)


_register_module("crysplugins_test_support", Path(__file__).resolve().parent / "support.py")
_register_module("crysplugins_classical_fixtures", Path(__file__).resolve().parent / "data" / "make_classical_fixtures.py")
_register_module("crysplugins_tests_coot_helpers", Path(__file__).resolve().parent / "coot_stubs" / "helpers.py")


def make_plugin_dist(root: Path, dist_name: str, version: str, modules: Mapping[str, str],
                     entry_points: Mapping[str, str]) -> Path:
    """Write modules and a dist-info for ``dist_name`` into ``root``; return ``root``.

    ``modules`` maps a module file name (``"myplugin.py"``) to its source; ``entry_points`` maps an
    entry-point name to ``"module"`` or ``"module:attr"`` in the ``crysplugins`` group.
    """
    root.mkdir(parents=True, exist_ok=True)
    for filename, source in modules.items():
        (root / filename).write_text(source)
    info = root / f"{dist_name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist_name}\nVersion: {version}\n")
    lines = ["[crysplugins]"] + [f"{name} = {target}" for name, target in entry_points.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    (info / "RECORD").write_text("")
    return root


def subprocess_env(pythonpath: Path | str | None = None, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("CRYSPLUGINS_DISABLE_PLUGIN_AUTOLOAD", None)
    env.pop("CRYSPLUGINS_PLUGINS", None)
    env["OMP_NUM_THREADS"] = "1"
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(pythonpath)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.update(extra)
    return env


def run_cli(*args: str, pythonpath: Path | str | None = None, cwd: Path | None = None,
            timeout: float = 120, **env_extra: str) -> subprocess.CompletedProcess:
    """Run the real command line (``python -m crysplugins.cli``) and capture its output."""
    return subprocess.run([sys.executable, "-m", "crysplugins.cli", *args], capture_output=True, text=True,
                          env=subprocess_env(pythonpath, **env_extra), cwd=cwd, timeout=timeout)


@pytest.fixture(scope="session")
def example_plugin_target(tmp_path_factory) -> Path:
    """``pip install --no-deps --target`` of examples/third_party_plugin (a real build + install)."""
    work = tmp_path_factory.mktemp("example_plugin")
    src = work / "src"
    shutil.copytree(EXAMPLE_PLUGIN, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = work / "site"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
                           "--no-index", "--quiet", "--target", str(target), str(src)],
                          capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"pip install of the example plugin failed:\n{proc.stdout}\n{proc.stderr}")
    return target


@pytest.fixture
def make_dist():
    """The :func:`make_plugin_dist` helper (test modules cannot import conftest under importlib mode)."""
    return make_plugin_dist


@pytest.fixture
def cli():
    """The :func:`run_cli` helper."""
    return run_cli
