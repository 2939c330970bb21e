"""The crysplugins Coot script under stand-in Coot modules (both Coot generations) and the real CLI.

Coot itself is replaced by recording stand-ins (tests/coot_stubs/fake_coot.py); the ``crysplugins``
command the script runs is the real one of this environment, with a small third-party test plugin made
visible through an entry-point dist-info on the child's PYTHONPATH.  The GLib/gobject timeouts are
driven by the test (``Recorder.run_timers``), so every step is deterministic.
"""
from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import gemmi
import numpy as np
import pytest


import crysplugins_tests_coot_helpers as helpers  # registered by conftest.py
from crysplugins_test_support import write_phasing_mtz
fake = helpers.fake_coot()


@pytest.fixture
def coot_env(monkeypatch, tmp_path):
    helpers.setup_env(monkeypatch, tmp_path)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))  # the script's temp folders land in tmp_path
    return tmp_path


def start(monkeypatch, generation="1", menus_in="coot_gui", with_map=True):
    recorder = fake.Recorder()
    coot = fake.FakeCoot(recorder)
    if with_map:
        coot.refinement_map = coot.add_map(str(helpers.MAP))
    fake.install_modules(monkeypatch, generation, coot, recorder, menus_in=menus_in)
    namespace = fake.namespace_functions(recorder) if menus_in == "namespace" else {}
    app = helpers.run_script(namespace=namespace)["crysplugins_coot"]
    recorder.run_timers()  # the background `crysplugins list --json`
    return app, coot, recorder


def fixture_map_values() -> np.ndarray:
    m = gemmi.read_ccp4_map(str(helpers.MAP))
    m.setup(float("nan"))
    return np.array(m.grid, dtype=np.float64)


# ------------------------------------------------------------------------------------------ menus

def test_coot1_menu_has_prefixed_actions_for_map_and_reflection_predictors(monkeypatch, coot_env):
    app, coot, rec = start(monkeypatch, "1")
    assert app.generation == "1"
    assert rec.called("attach_module_menu_button") == [("crysplugins",)]
    assert rec.called("coot_menubar_menu") == []
    menu = rec.menus["crysplugins"]
    assert menu.labels() == ["Refresh predictor list", "Stop running predictions",
                             "Density-modify the map's MTZ...", "coot-test-amplitudes...",
                             "coot-test-normalise...", "coot-test-sequence..."]
    names = [item.action_name for item in menu.items]
    assert names == ["crysplugins-refresh", "crysplugins-stop", "crysplugins-density-modify",
                     "crysplugins-predict-coot-test-amplitudes",
                     "crysplugins-predict-coot-test-normalise", "crysplugins-predict-coot-test-sequence"]
    assert all(n.startswith("crysplugins-") for n in rec.actions)
    # the list ran in the background: a GLib timeout was registered, no dialog (no error)
    assert rec.called("timeout_add") and rec.dialogs == []
    assert any("3 predictor(s) in the menu" in s for s in rec.status)


def test_refresh_does_not_duplicate_items(monkeypatch, coot_env):
    app, coot, rec = start(monkeypatch, "1")
    rec.activate("crysplugins", "Refresh predictor list")
    rec.run_timers()
    assert len(rec.menus["crysplugins"].items) == 6


@pytest.mark.parametrize("menus_in", ["coot_gui", "namespace"])
def test_coot09_menubar_menu_and_gobject_timeout(monkeypatch, coot_env, menus_in):
    app, coot, rec = start(monkeypatch, "0.9", menus_in=menus_in)
    assert app.generation == "0.9"
    assert rec.called("coot_menubar_menu") == [("crysplugins",)]
    assert rec.called("add_simple_action_to_menu") == []
    labels = [args[1] for args in rec.called("add_simple_coot_menu_menuitem")]
    assert labels == ["Refresh predictor list", "Stop running predictions", "Density-modify the map's MTZ...",
                      "coot-test-amplitudes...",
                      "coot-test-normalise...", "coot-test-sequence..."]
    assert app.timer == sys.modules["gobject"].timeout_add
    # a 0.9 menu item callback receives the gtk menu item: run one action through it
    rec.activate("crysplugins", "coot-test-normalise...")
    rec.run_timers()
    assert len(rec.called("read_ccp4_map")) == 2


def test_loaded_once_per_session(monkeypatch, coot_env):
    app, coot, rec = start(monkeypatch, "1")
    again = helpers.run_script()["crysplugins_coot"]
    assert again is app
    assert rec.called("attach_module_menu_button") == [("crysplugins",)]


def test_menu_retried_when_coot_window_not_ready(monkeypatch, coot_env):
    rec = fake.Recorder()
    fake.install_modules(monkeypatch, "1", fake.FakeCoot(rec), rec)
    real_attach = rec.attach_module_menu_button
    failures = []

    def attach(name):
        if len(failures) < 2:
            failures.append(name)
            raise RuntimeError("no main window yet")
        return real_attach(name)

    sys.modules["coot_gui"].attach_module_menu_button = attach
    app = helpers.run_script()["crysplugins_coot"]
    assert rec.menus == {} and [ms for ms, _ in rec.timers] == [1000]
    rec.run_timers()
    assert len(failures) == 2
    assert rec.menus["crysplugins"].labels()[-1] == "coot-test-sequence..."


def test_without_a_gui_nothing_is_added(monkeypatch, coot_env):
    rec = fake.Recorder()
    fake.install_modules(monkeypatch, "1", fake.FakeCoot(rec), rec)
    del sys.modules["coot_gui"].attach_module_menu_button
    app = helpers.run_script()["crysplugins_coot"]
    assert app.generation is None and rec.menus == {} and rec.timers == []


# ---------------------------------------------------------------------------------------- actions

def test_action_exports_map_runs_cli_and_reads_results_back(monkeypatch, coot_env):
    app, coot, rec = start(monkeypatch, "1")
    job = rec.activate("crysplugins", "coot-test-normalise...")
    (imol, exported), = rec.called("export_map")
    assert imol == 0 and exported.endswith("coot_map_0.ccp4")
    workdir = os.path.dirname(exported)
    session = Path(workdir).parent  # a fresh folder per run, inside this Coot session's folder
    assert session.parent == coot_env and session.name.startswith(f"crysplugins-coot-session-{os.getpid()}-")
    out = os.path.join(workdir, "out")
    assert job.argv == helpers.crysplugins_command() + [
        "predict", "coot-test-normalise", "--map", exported, "--out", out, "--json", "--quiet"]
    assert rec.called("read_ccp4_map") == []  # nothing read before the child finished
    rec.run_timers()
    assert job.returncode == 0
    read = rec.called("read_ccp4_map")
    assert read == [(os.path.join(out, "mask.ccp4"), 0), (os.path.join(out, "normalised.ccp4"), 0)]
    mask_imol, norm_imol = 1, 2
    assert coot.molecules[mask_imol]["name"] == "crysplugins coot-test-normalise: mask"
    assert coot.molecules[norm_imol]["name"] == "crysplugins coot-test-normalise: normalised"
    assert rec.called("set_contour_level_absolute") == [(mask_imol, 0.5)]
    assert rec.called("set_contour_level_in_sigma") == [(norm_imol, 1.0)]
    # the scalars shown are the ones of the fixture map, computed here independently
    values = fixture_map_values()
    rms = values.std()
    fraction = float((((values - values.mean()) / rms) > 1.0).mean())
    dialog, = rec.dialogs
    assert f"mask_fraction: {fraction:.4g}" in dialog
    assert f"map_rms: {rms:.4g} e/Å³" in dialog
    assert "map mask -> molecule 1" in dialog and "map normalised -> molecule 2" in dialog
    assert any(s.startswith("crysplugins: coot-test-normalise finished") for s in rec.status)
    # the map read back is the normalised fixture map
    back = gemmi.read_ccp4_map(read[1][0])
    back.setup(float("nan"))
    np.testing.assert_allclose(np.array(back.grid), (values - values.mean()) / rms, atol=1e-5)


def test_first_map_used_when_no_refinement_map(monkeypatch, coot_env):
    rec = fake.Recorder()
    coot = fake.FakeCoot(rec)
    coot.add_model({"A": ["GLY"]})
    coot.add_map(str(helpers.MAP))  # molecule 1, not the refinement map
    fake.install_modules(monkeypatch, "1", coot, rec)
    helpers.run_script()
    rec.run_timers()
    rec.activate("crysplugins", "coot-test-normalise...")
    assert rec.called("export_map")[0][0] == 1


def test_no_map_loaded_says_so(monkeypatch, coot_env):
    app, coot, rec = start(monkeypatch, "1", with_map=False)
    assert rec.activate("crysplugins", "coot-test-normalise...") is None
    assert rec.dialogs == ["Load a map (or an MTZ file) in Coot first: coot-test-normalise works on a map."]
    assert rec.timers == []


def test_cli_error_sentence_shown_in_info_dialog(monkeypatch, coot_env):
    bad = coot_env / "broken.map"
    bad.write_bytes(b"this is not a CCP4 map" * 100)
    app, coot, rec = start(monkeypatch, "1", with_map=False)
    coot.refinement_map = coot.add_map(str(bad))
    job = rec.activate("crysplugins", "coot-test-normalise...")
    rec.run_timers()
    assert job.returncode != 0
    dialog, = rec.dialogs
    assert dialog.startswith("crysplugins coot-test-normalise failed:\n")
    assert "CCP4/MRC map" in dialog and "coot_map_0.ccp4" in dialog
    assert "Traceback" not in dialog and "error:" not in dialog
    assert rec.called("read_ccp4_map") == []


@pytest.mark.parametrize("fp,columns", [("FWT", "PHI=PHWT"), ("FP", "F=FP,PHI=PHWT")])
def test_reflections_come_from_the_maps_mtz(monkeypatch, coot_env, fp, columns):
    app, coot, rec = start(monkeypatch, "1", with_map=False)
    coot.refinement_map = coot.add_map(str(helpers.MAP), mtz=str(helpers.MTZ), fp=fp, phi="PHWT")
    job = rec.activate("crysplugins", "coot-test-amplitudes...")
    assert job.argv[job.argv.index("--reflections") + 1] == str(helpers.MTZ)
    assert job.argv[job.argv.index("--reflections-columns") + 1] == columns
    assert rec.called("export_map") == []  # this predictor takes no map
    rec.run_timers()
    n = gemmi.read_mtz_file(str(helpers.MTZ)).nreflections
    dialog, = rec.dialogs
    assert f"n_reflections: {n}" in dialog
    assert "F column: FP" in dialog  # FWT (map coefficients) is never passed as the observed F
    # no map in the result: Coot makes one from the MTZ map coefficients it wrote
    (path, f, phi, weight, use_weights, is_diff), = rec.called("make_and_draw_map")
    assert Path(path).name == "coefficients.mtz" and (f, phi, weight, use_weights, is_diff) == ("F", "PHI", "", 0, 0)
    assert "crysplugins coot-test-amplitudes: coefficients" in [m["name"] for m in coot.molecules.values()]


def test_reflections_needed_but_map_not_from_mtz(monkeypatch, coot_env):
    app, coot, rec = start(monkeypatch, "1")
    assert rec.activate("crysplugins", "coot-test-amplitudes...") is None
    dialog, = rec.dialogs
    assert "needs the MTZ file the map was calculated from" in dialog


def test_sequence_taken_from_the_model(monkeypatch, coot_env):
    app, coot, rec = start(monkeypatch, "1")
    coot.add_model({"A": ["MET", "LYS", "HOH", "VAL"], "B": ["GLY", "MSE"]})
    job = rec.activate("crysplugins", "coot-test-sequence...")
    seq_file = job.argv[job.argv.index("--sequence") + 1]
    assert Path(seq_file).read_text() == ">coot\nMKVGM\n"
    rec.run_timers()
    assert "n_residues: 5" in rec.dialogs[0] and "sequence MKVGM" in rec.dialogs[0]


def test_sequence_asked_for_when_no_model(monkeypatch, coot_env):
    app, coot, rec = start(monkeypatch, "1")
    assert rec.activate("crysplugins", "coot-test-sequence...") is None
    assert rec.timers == []
    (label, handler), = rec.entry_dialogs
    assert "needs the protein sequence" in label
    job = handler("MKV LLA\n")  # what the user typed, Go pressed
    assert job is not None
    rec.run_timers()
    assert "n_residues: 6" in rec.dialogs[0]


def test_missing_command_is_reported(monkeypatch, coot_env):
    monkeypatch.setenv("CRYSPLUGINS_COMMAND", str(coot_env / "no-such-crysplugins"))
    rec = fake.Recorder()
    fake.install_modules(monkeypatch, "1", fake.FakeCoot(rec), rec)
    helpers.run_script()
    assert rec.timers == []
    assert "Could not run crysplugins" in rec.dialogs[0]


def test_builtin_predictors_appear_next_to_third_party_ones(monkeypatch, coot_env):
    monkeypatch.delenv("CRYSPLUGINS_PLUGINS")
    app, coot, rec = start(monkeypatch, "1")
    listing = subprocess.run(helpers.crysplugins_command() + ["list", "--json"], capture_output=True, text=True,
                             env={**os.environ, "PYTHONPATH": os.environ["CRYSPLUGINS_PYTHONPATH"]}, check=True)
    import json

    rows = json.loads(listing.stdout)["predictors"]
    expected = sorted(r["name"] for r in rows if {i["kind"] for i in r["inputs"]} & {"map", "reflections"})
    assert "coot-test-normalise" in expected
    assert sorted(app.menu_names) == expected


# --------------------------------------------------------------------------------- script hygiene

ALLOWED_IMPORTS = {"__future__", "atexit", "io", "json", "os", "re", "shlex", "subprocess", "sys", "tempfile", "time", "shutil",
                   "coot", "coot_gui", "coot_utils", "gi.repository", "gobject", "glib"}


def test_script_imports_only_stdlib_and_coot_modules():
    tree = ast.parse(helpers.SCRIPT.read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module)
        elif isinstance(node, ast.Call) and getattr(node.func, "id", "") == "_crysplugins_import":
            arg = node.args[0]
            if isinstance(arg, ast.Constant):
                imported.add(arg.value)
    assert imported <= ALLOWED_IMPORTS, imported - ALLOWED_IMPORTS
    assert "crysplugins" not in imported


def test_script_compiles_under_python27():
    """Some Coot 0.9 builds embed Python 2.7; the script keeps to syntax both understand."""
    candidates = [shutil.which("python2.7")]
    pyenv = Path.home() / ".pyenv" / "versions" / "2.7.18" / "bin" / "python2.7"
    candidates.append(str(pyenv) if pyenv.exists() else None)
    exe = next((c for c in candidates if c), None)
    if exe is None:
        pytest.skip("no Python 2.7 on this machine")
    proc = subprocess.run([exe, "-c", "import sys, py_compile; py_compile.compile(sys.argv[1], "
                           "cfile='/dev/null', doraise=True)", str(helpers.SCRIPT)],
                          capture_output=True, text=True, env={**os.environ, "PYENV_VERSION": "2.7.18"})
    if proc.returncode != 0 and "command not found" in proc.stderr:
        pytest.skip("python2.7 shim without an interpreter")
    assert proc.returncode == 0, proc.stderr


# ------------------------------------------------------------------- a real GLib main loop

def _python_with_gi() -> str | None:
    """A Python other than this one that has PyGObject (as Coot 1.x's embedded Python does)."""
    for exe in (os.environ.get("CRYSPLUGINS_TEST_GI_PYTHON"), "/usr/bin/python3", shutil.which("python3")):
        if exe and os.path.exists(exe) and os.path.realpath(exe) != os.path.realpath(sys.executable):
            probe = subprocess.run([exe, "-c", "from gi.repository import GLib"], capture_output=True)
            if probe.returncode == 0:
                return exe
    return None


def test_real_glib_main_loop_in_a_python_without_crysplugins(monkeypatch, coot_env):
    """Coot's Python is not the user's: the script runs under a foreign Python with a real GLib loop,
    the child runs the real CLI, and the main loop keeps iterating while the prediction runs."""
    exe = _python_with_gi()
    if exe is None:
        pytest.skip("no second Python with PyGObject (gi) on this machine")
    result = coot_env / "glib.json"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["TMPDIR"] = str(coot_env)
    proc = subprocess.run([exe, str(helpers.STUBS / "glib_driver.py"), str(helpers.SCRIPT), str(helpers.MAP),
                           str(result)], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = __import__("json").loads(result.read_text())
    assert summary["crysplugins_importable"] is False
    assert "GLib" in summary["timer"] or "gi" in summary["timer"]
    assert "coot-test-normalise..." in summary["menu"]
    assert summary["returncode"] == 0
    assert [Path(p).name for p, _ in summary["read_ccp4_map"]] == ["mask.ccp4", "normalised.ccp4"]
    assert "mask_fraction:" in summary["dialogs"][0]
    assert summary["activate_s"] < 0.5  # the menu callback returns at once
    assert summary["ticks_during_job"] >= 3  # the main loop kept running while the child worked
    print("glib round trip:", {k: summary[k] for k in ("python", "activate_s", "job_s", "ticks_during_job")})


# ------------------------------------------------------------ Coot 0.9 start-up, GTK action names

def test_coot09_menu_retried_when_menubar_menu_returns_none(monkeypatch, coot_env):
    """Coot 0.9's coot_menubar_menu swallows its error and returns None before the window exists."""
    rec = fake.Recorder()
    rec.menubar_missing_for = 2
    fake.install_modules(monkeypatch, "0.9", fake.FakeCoot(rec), rec)
    helpers.run_script()
    assert rec.menus == {} and [ms for ms, _ in rec.timers] == [1000]
    rec.run_timers()
    assert len(rec.called("coot_menubar_menu")) == 3
    assert rec.menus["crysplugins"].labels()[-1] == "coot-test-sequence..."


def test_action_names_valid_for_gtk_when_plugin_names_are_not(monkeypatch, coot_env):
    app, coot, rec = start(monkeypatch, "1")
    row = {"inputs": [{"name": "map", "kind": "map", "required": True}], "outputs": []}
    added = app.add_predictors({"predictors": [dict(row, name="my_tool"), dict(row, name="my-tool"),
                                               dict(row, name="tool v2")]})
    assert added == ["my_tool", "my-tool", "tool v2"]
    names = [item.action_name for item in rec.menus["crysplugins"].items[-3:]]
    assert names == ["crysplugins-predict-my-tool", "crysplugins-predict-my-tool-2", "crysplugins-predict-tool-v2"]
    # each action runs its own predictor
    started = []
    monkeypatch.setattr(app, "run_predictor", lambda name, answers=None: started.append(name))
    for label in ("my_tool...", "my-tool...", "tool v2..."):
        rec.activate("crysplugins", label)
    assert started == ["my_tool", "my-tool", "tool v2"]


# ------------------------------------------------------- inputs for a map Coot made from an MTZ

SOLVENT_MASK_ROW = {"name": "mask-like", "inputs": [
    {"name": "map", "kind": "map", "required": False, "group": "data", "columns": []},
    {"name": "reflections", "kind": "reflections", "required": False, "group": "data", "columns": ["F", "PHI", "FOM?"]},
    {"name": "resolution", "kind": "float", "required": False, "group": "", "columns": []}], "outputs": []}
PATTERSON_ROW = {"name": "patterson-like", "inputs": [
    {"name": "reflections", "kind": "reflections", "required": False, "group": "data", "columns": ["F?", "SIGF?", "I?"]},
    {"name": "patterson", "kind": "map", "required": False, "group": "data", "columns": []}], "outputs": []}


def mtz_map_app(monkeypatch, fp="FWT", phi="PHWT", weight="", resolution=4.02):
    app, coot, rec = start(monkeypatch, "1", with_map=False)
    coot.refinement_map = coot.add_map(str(helpers.MAP), mtz=str(helpers.MTZ), fp=fp, phi=phi, weight=weight,
                                       resolution=resolution)
    return app, coot, rec


def test_map_or_reflections_group_gets_the_map_and_its_resolution(monkeypatch, coot_env):
    app, coot, rec = mtz_map_app(monkeypatch, weight="FOM")
    args, problem, needs = app.build_inputs(SOLVENT_MASK_ROW, 0, str(coot_env))
    assert problem is None and needs is None
    assert args[0] == "--map" and args[1].endswith("coot_map_0.ccp4")
    assert args[2:] == ["--resolution", "4.02"]  # no --reflections: the command takes one or the other


def test_patterson_input_never_gets_the_density_map(monkeypatch, coot_env):
    app, coot, rec = mtz_map_app(monkeypatch, fp="FP", phi="PHIB")
    args, problem, needs = app.build_inputs(PATTERSON_ROW, 0, str(coot_env))
    assert args == ["--reflections", str(helpers.MTZ), "--reflections-columns", "F=FP"]
    assert rec.called("export_map") == []


def test_patterson_predictor_on_a_map_without_mtz_asks_for_the_mtz(monkeypatch, coot_env):
    app, coot, rec = start(monkeypatch, "1")
    args, problem, needs = app.build_inputs(PATTERSON_ROW, 0, str(coot_env))
    assert args is None and "needs the MTZ file the map was calculated from" in problem


def test_fom_never_weights_map_coefficients(monkeypatch, coot_env):
    app, coot, rec = mtz_map_app(monkeypatch, fp="FWT", phi="PHWT", weight="FOM")
    assert app.mtz_columns(0, ["F", "FWT", "PHI", "FOM"]) == "FWT=FWT,PHI=PHWT"
    observed = coot.add_map(str(helpers.MAP), mtz=str(helpers.MTZ), fp="FP", phi="PHIB", weight="FOM")
    assert app.mtz_columns(observed, ["F", "PHI", "FOM"]) == "F=FP,PHI=PHIB,FOM=FOM"


def test_required_number_is_asked_for(monkeypatch, coot_env):
    app, coot, rec = start(monkeypatch, "1")
    row = {"name": "coot-test-normalise", "inputs": [
        {"name": "map", "kind": "map", "required": True},
        {"name": "solvent_fraction", "kind": "float", "required": True, "help": "fraction of the cell"}],
        "outputs": []}
    app.predictors["coot-test-normalise"] = row
    assert app.run_predictor("coot-test-normalise") is None
    (label, handler), = rec.entry_dialogs
    assert label == "coot-test-normalise needs --solvent-fraction: fraction of the cell"
    assert handler("half") is None and "needs a number for --solvent-fraction" in rec.dialogs[-1]
    row["inputs"].pop()  # the real test predictor takes no such input: run it once the number is given
    row["inputs"].append({"name": "solvent_fraction", "kind": "float", "required": True, "flag": "--map-rms"})
    job = handler(" 0.5 ")
    assert job.argv[job.argv.index("--map-rms") + 1] == "0.5"


def test_probability_maps_contoured_in_their_own_units(monkeypatch, coot_env):
    app, coot, rec = start(monkeypatch, "1")
    app.predictors["p"] = {"name": "p", "outputs": [{"name": "prob", "kind": "map"}, {"name": "dens", "kind": "map"}]}
    app.load_result("p", {"files": {"prob": str(helpers.MAP), "dens": str(helpers.MAP)},
                          "maps": {"prob": {"units": "P(solvent)"}, "dens": {"units": "e/Å^3"}}})
    names = {coot.molecules[i]["name"]: i for i in coot.molecules}
    assert rec.called("set_contour_level_absolute") == [(names["crysplugins p: prob"], 0.5)]
    assert rec.called("set_contour_level_in_sigma") == [(names["crysplugins p: dens"], 1.0)]


# ------------------------------------------------------------------------- prediction folders

def test_prediction_folders_are_cleaned_up(monkeypatch, coot_env):
    app, coot, rec = start(monkeypatch, "1")
    monkeypatch.setattr(app, "cleanup", app.cleanup)  # (atexit holds the bound method)
    job = rec.activate("crysplugins", "coot-test-normalise...")
    rec.run_timers()
    first = job.workdir
    # the exported map (a copy of what Coot holds) is gone, the results stay for the user
    assert sorted(os.listdir(first)) == ["out", "stderr.txt", "stdout.txt"]
    for _ in range(5):
        rec.activate("crysplugins", "coot-test-normalise...")
        rec.run_timers()
    assert not os.path.exists(first) and len(app.run_dirs) == 5
    assert all(os.path.isdir(d) for d in app.run_dirs)
    session = app.session_dir
    assert sorted(os.listdir(session)) == sorted(os.path.basename(d) for d in app.run_dirs)
    app.cleanup()  # registered with atexit: Coot's exit
    assert not os.path.exists(session)


def test_folders_of_ended_sessions_are_pruned(coot_env):
    mod = helpers.run_script()  # no Coot modules: the functions only
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    gone = coot_env / f"crysplugins-coot-session-{dead.pid}-abc"
    alive = coot_env / f"crysplugins-coot-session-{os.getppid()}-abc"
    other = coot_env / "crysplugins-coot-session-notapid"
    for folder in (gone, alive, other):
        (folder / "run").mkdir(parents=True)
    removed = mod["crysplugins_prune_sessions"](str(coot_env))
    assert removed == [str(gone)]
    assert alive.is_dir() and other.is_dir()


# ------------------------------------------------------------------------------------------ density modification

def phasing_mtz(path: Path) -> None:
    write_phasing_mtz(path)


def test_density_modify_action_runs_the_command_and_loads_the_map(monkeypatch, coot_env):
    mtz = coot_env / "phased.mtz"
    phasing_mtz(mtz)
    app, coot, rec = start(monkeypatch, "1", with_map=False)
    coot.refinement_map = coot.add_map(str(helpers.MAP), mtz=str(mtz), fp="FP", phi="PHIB", weight="FOM")
    app.dm_extra_args = ["--cycles", "3", "--mask", "local-variance"]
    assert rec.activate("crysplugins", "Density-modify the map's MTZ...") is None  # no model: asks
    (question, go), = rec.entry_dialogs
    assert "Solvent fraction" in question
    job = go("0.55")
    assert job.argv[len(helpers.crysplugins_command()):] == [
        "density-modify", "--reflections", str(mtz), "--out", os.path.join(job.workdir, "out"),
        "--reflections-columns", "F=FP,PHI=PHIB,FOM=FOM", "--solvent-fraction", "0.55",
        "--cycles", "3", "--mask", "local-variance"]
    rec.run_timers()
    assert job.returncode == 0, rec.dialogs
    (path, f, phi, weight, use_weights, is_diff), = rec.called("make_and_draw_map")
    assert path == os.path.join(job.workdir, "out", "density_modified.mtz") and (f, phi) == ("FWT", "PHWT")
    out = gemmi.read_mtz_file(path)
    assert {"FWT", "PHWT", "PHIB", "FOM", "HLA"} <= {c.label for c in out.columns}
    assert out.spacegroup.hm == "P 21 21 21"
    assert coot.molecules[1]["name"] == "crysplugins density-modified (FWT/PHWT)"
    assert "solvent fraction 0.550" in rec.dialogs[-1] and "molecule 1" in rec.dialogs[-1]


def test_density_modify_action_needs_the_maps_mtz(monkeypatch, coot_env):
    app, coot, rec = start(monkeypatch, "1")  # a map read from a CCP4 file: no MTZ behind it
    assert rec.activate("crysplugins", "Density-modify the map's MTZ...") is None
    dialog, = rec.dialogs
    assert dialog.startswith("Density modification needs a map calculated from an MTZ file")
    assert rec.timers == []
