"""A third-party plugin cannot take the host down: the fault-variant plugins of tests/data/fault_plugins.

Each folder there is an installed distribution (module + ``.dist-info`` with ``entry_points.txt``); with
all of them on the path the command line must keep the built-ins and the good
plugin working, name every faulty plugin with its distribution in one sentence, time out a hanging
import or prediction, survive ``os._exit`` and a segmentation fault, and let ``demo`` record each failure
and go on.  ``list`` and ``demo`` run the real command line in a subprocess; ``predict`` runs the
command line's ``main`` in this process (a fresh host: the plugins are imported and called only in the
host's child processes, so a crash there cannot reach the test).  The time limits are lowered through
the environment so that the hangs end quickly.
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

FAULTS = Path(__file__).resolve().parent / "data" / "fault_plugins"
ALL = os.pathsep.join(str(p) for p in sorted(FAULTS.iterdir()) if p.is_dir())
#: all but the hanging import, where a test is about something else (each command would wait for it)
NO_HANG = os.pathsep.join(p for p in ALL.split(os.pathsep) if not p.endswith("import_hang"))
#: short limits (s): a hang costs every command that meets it this long; a good plugin's import and predict
#: take milliseconds, and the limits count from after the child's start-up
LIMITS = {"CRYSPLUGINS_PLUGIN_IMPORT_TIMEOUT": "1.5", "CRYSPLUGINS_PLUGIN_TIMEOUT": "1.5"}
SOLVENT = ["solvent-content", "--cell", "34.321 45.508 98.912 90 90 90", "--spacegroup", "19",
           "--molecular-weight", "18000", "--resolution", "1.8", "--json"]

#: plugin entry point -> words of its failure in `list` (discovery)
DISCOVERY_FAILURES = {
    "fault_import_error": "import failed: ImportError: this plugin cannot be imported",
    "fault_import_hang": "its import did not finish in 1.5 s",
    "fault_invalid_object": "invalid predictor 'fault invalid!'",
}
#: predictor -> (plugin, distribution, words of the one-sentence error of `predict`)
PREDICT_FAILURES = {
    "fault-raises": ("fault_predict_raises", "crysfault-predict-raises 0.1", "RuntimeError: boom in predict"),
    "fault-exits": ("fault_predict_exits", "crysfault-predict-exits 0.1", "ended its process during "
                    "fault-exits.predict (exit code 3)"),
    "fault-crashes": ("fault_predict_crashes", "crysfault-predict-crashes 0.1", "killed by signal SIGSEGV"),
    "fault-hangs": ("fault_predict_hangs", "crysfault-predict-hangs 0.1", "did not finish fault-hangs.predict "
                    "in 1.5 s"),
    "fault-foreign": ("fault_predict_foreign", "crysfault-predict-foreign 0.1", "an object of "
                      "crysfault_predict_foreign.Private, which the host does not load"),
}


def _one_sentence(stderr: str) -> str:
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ") and lines[0].endswith("."), lines[0]
    return lines[0]


def cli_here(monkeypatch, capsys, *args: str, pythonpath: str, fresh: bool = True,
             **env: str) -> subprocess.CompletedProcess:
    """Run ``crysplugins.cli.main`` in this process with the plugin folders on ``sys.path`` (the plugins
    themselves are only ever imported in the host's child processes); ``fresh`` builds a new host."""
    from crysplugins import cli, host

    for folder in pythonpath.split(os.pathsep):
        monkeypatch.syspath_prepend(folder)
    for key in ("CRYSPLUGINS_PLUGINS", "CRYSPLUGINS_DISABLE_PLUGIN_AUTOLOAD", "CRYSPLUGINS_DEBUG"):
        monkeypatch.delenv(key, raising=False)
    for key, value in {**LIMITS, **env}.items():
        monkeypatch.setenv(key, value)
    if fresh:
        monkeypatch.setattr(host, "_default_host", None)
    capsys.readouterr()
    code = cli.main(list(args))
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, captured.out, captured.err)


def test_list_survives_every_faulty_plugin(cli):
    proc = cli("list", "--json", pythonpath=ALL, **LIMITS)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    listing = json.loads(proc.stdout)
    names = {r["name"]: r for r in listing["predictors"]}
    assert names["fault-good"]["distribution"] == "crysfault-good 0.1"
    assert names["solvent-content"]["distribution"] == "crysplugins (built-in)"
    assert set(PREDICT_FAILURES) <= set(names)  # their faults show only when they run
    failures = {f["plugin"]: f for f in listing["failures"]}
    assert set(failures) == set(DISCOVERY_FAILURES)
    for plugin, words in DISCOVERY_FAILURES.items():
        assert words in failures[plugin]["error"]
        assert failures[plugin]["distribution"] == f"crysfault-{plugin[6:].replace('_', '-')} 0.1"


def test_builtins_and_good_plugin_predict_with_faulty_plugins_installed(monkeypatch, capsys):
    builtin = cli_here(monkeypatch, capsys, "predict", *SOLVENT, pythonpath=ALL)
    assert builtin.returncode == 0, builtin.stderr
    assert json.loads(builtin.stdout)["scalars"]["most_probable_copies"]["value"] == 1
    good = cli_here(monkeypatch, capsys, "predict", "fault-good", "--json", pythonpath=ALL, fresh=False)
    assert good.returncode == 0, good.stderr
    assert json.loads(good.stdout)["scalars"]["answer"]["value"] == 42.0


@pytest.mark.parametrize("predictor", list(PREDICT_FAILURES))
def test_a_failing_predict_is_one_sentence_naming_the_plugin(predictor, monkeypatch, capsys, tmp_path):
    plugin, dist, words = PREDICT_FAILURES[predictor]
    out = tmp_path / "out"
    proc = cli_here(monkeypatch, capsys, "predict", predictor, "--out", str(out), "--quiet", pythonpath=NO_HANG)
    assert proc.returncode != 0
    message = _one_sentence(proc.stderr)
    assert f"The plugin {plugin} ({dist})" in message and words in message, message
    assert not out.exists() or not any(out.iterdir())


def test_demo_records_each_failure_and_goes_on(cli, tmp_path):
    only = ",".join(["solvent_content", "fault_good", *(p for p, _, _ in PREDICT_FAILURES.values())])
    out = tmp_path / "demo"
    proc = cli("demo", "--out", str(out), "--quiet", pythonpath=NO_HANG, CRYSPLUGINS_PLUGINS=only, **LIMITS)
    assert proc.returncode == 1  # some predictors failed
    assert "Traceback" not in proc.stderr
    summary = json.loads((out / "demo.json").read_text())
    assert summary["solvent-content"]["status"] == "ok"
    assert summary["fault-good"]["status"] == "ok"
    assert summary["fault-good"]["scalars"]["answer"]["value"] == 42.0
    for predictor, (plugin, dist, words) in PREDICT_FAILURES.items():
        assert summary[predictor]["status"] == "error"
        assert f"The plugin {plugin} ({dist})" in summary[predictor]["error"] and words in summary[predictor]["error"]
    assert f"demo: 2 of {2 + len(PREDICT_FAILURES)} predictors ran, {len(PREDICT_FAILURES)} failed" in proc.stdout


def test_in_process_host_holds_proxies_that_survive(monkeypatch):
    """The Python API (what the GUI worker calls) gets the same protection as the command line."""
    from crysplugins.errors import CrysError
    from crysplugins.host import Host
    from crysplugins.interface import CancelToken, Request

    for folder in NO_HANG.split(os.pathsep):
        monkeypatch.syspath_prepend(folder)
    for key, value in LIMITS.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("CRYSPLUGINS_PLUGINS", raising=False)
    monkeypatch.delenv("CRYSPLUGINS_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    host = Host()
    seen = []
    good = host.get("fault-good").predict(Request(progress=lambda f, m: seen.append((f, m))))
    assert good.scalars["answer"].value == 42.0
    assert seen == [(0.5, "half way")]
    with pytest.raises(CrysError, match="killed by signal SIGSEGV"):
        host.get("fault-crashes").predict(Request())
    cancel = CancelToken()
    cancel.cancel()
    with pytest.raises(CrysError, match="cancelled"):
        host.get("fault-hangs").predict(Request(cancel=cancel))
    assert host.get("solvent-content").predict(Request(inputs=host.get("solvent-content").example_inputs()))


def test_isolation_can_be_turned_off(monkeypatch):
    """CRYSPLUGINS_PLUGIN_ISOLATION=0 loads third-party plugins in-process (real objects, no child)."""
    from crysplugins.host import Host
    from crysplugins.interface import Request
    from crysplugins.sandbox import PredictorProxy

    monkeypatch.syspath_prepend(str(FAULTS / "good"))
    monkeypatch.delenv("CRYSPLUGINS_PLUGINS", raising=False)
    monkeypatch.delenv("CRYSPLUGINS_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    monkeypatch.setenv("CRYSPLUGINS_PLUGIN_ISOLATION", "1")
    assert isinstance(Host().get("fault-good"), PredictorProxy)
    monkeypatch.setenv("CRYSPLUGINS_PLUGIN_ISOLATION", "0")
    host = Host()
    good = host.get("fault-good")
    assert not isinstance(good, PredictorProxy) and type(good).__name__ == "Good"
    assert host.predictors["fault-good"].distribution == "crysfault-good 0.1"
    assert good.predict(Request()).scalars["answer"].value == 42.0
