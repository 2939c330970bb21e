"""A Coot menu action's whole round trip through the real ``coot_headless_api`` library.

Coot's map code is real here: the fixture map is read into a ``molecules_container_t``, the script's
action exports it with the container's ``write_map`` (Coot's own CCP4 writer, as ``coot.export_map``
does in the GUI), the real ``crysplugins predict`` runs on the exported file as a child process, and the
maps it writes are read back into the container with ``read_ccp4_map``; the test then checks the cell
and grid Coot holds.  Only the menu calls are recorded stand-ins (there is no GTK in the headless API).
coot_headless_api prints a lot and writes ./coot-backup, so it runs in a temporary working folder.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import gemmi
import numpy as np
import pytest

chapi = pytest.importorskip("coot_headless_api")


import crysplugins_tests_coot_helpers as helpers  # registered by conftest.py
fake = helpers.fake_coot()


def read_values(path) -> tuple[np.ndarray, gemmi.UnitCell]:
    m = gemmi.read_ccp4_map(str(path))
    m.setup(float("nan"))
    return np.array(m.grid, dtype=np.float64), m.grid.unit_cell


def start_coot(monkeypatch, tmp_path: Path, refinement_map, generation: str = "1",
               only_test_plugin: bool = True, **env: str):
    """The crysplugins script loaded into a headless Coot whose refinement map is ``refinement_map(coot)``
    (the script's generation ``generation``), in a fresh working folder; ``env`` is set after the child
    environment.  Returns ``(app, coot, rec, mc)``."""
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)  # coot_headless_api writes ./coot-backup
    helpers.setup_env(monkeypatch, tmp_path, only_test_plugin=only_test_plugin)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    mc = chapi.molecules_container_t(False)
    mc.set_make_backups(False)
    rec = fake.Recorder()
    coot = fake.HeadlessCoot(rec, mc)
    coot.refinement_map = refinement_map(coot)
    fake.install_modules(monkeypatch, generation, coot, rec)
    app = helpers.run_script()["crysplugins_coot"]
    rec.run_timers()
    return app, coot, rec, mc


def load_fixture_map(coot) -> int:
    return coot.load_map(str(helpers.MAP))


@pytest.fixture
def headless(monkeypatch, tmp_path):
    return (*start_coot(monkeypatch, tmp_path, load_fixture_map), tmp_path)


def check_in_container(mc, imol: int, path_for_check: Path, shape, cell) -> np.ndarray:
    """Cell and grid of molecule ``imol`` as Coot holds it (written back out by Coot itself)."""
    assert mc.is_valid_map_molecule(imol)
    assert [mc.get_number_of_map_sections(imol, axis) for axis in range(3)] == list(shape)
    assert mc.write_map(imol, str(path_for_check)) == 1
    values, held_cell = read_values(path_for_check)
    assert held_cell.approx(cell, 1e-4), (held_cell, cell)
    assert values.shape == tuple(shape)
    return values


def test_round_trip_through_coot_headless_api(headless):
    app, coot, rec, mc, tmp = headless
    source, source_cell = read_values(helpers.MAP)
    job = rec.activate("crysplugins", "coot-test-normalise...")
    (imol, exported), = rec.called("export_map")
    # what Coot wrote is the fixture map, whole cell, same grid
    exported_values, exported_cell = read_values(exported)
    assert exported_cell.approx(source_cell, 1e-4)
    np.testing.assert_allclose(exported_values, source, atol=1e-6)
    rec.run_timers()
    assert job.returncode == 0, Path(job.stderr_path).read_text()
    (mask_path, _), (norm_path, _) = rec.called("read_ccp4_map")
    loaded = [i for i in coot.molecules if i != imol]
    assert len(loaded) == 2
    norm_imol = max(loaded)
    mask_imol = min(loaded)
    assert mc.get_molecule_name(norm_imol) == "crysplugins coot-test-normalise: normalised"
    assert mc.get_molecule_name(mask_imol) == "crysplugins coot-test-normalise: mask"
    norm = check_in_container(mc, norm_imol, tmp / "norm_from_coot.ccp4", source.shape, source_cell)
    mask = check_in_container(mc, mask_imol, tmp / "mask_from_coot.ccp4", source.shape, source_cell)
    expected = (source - source.mean()) / source.std()
    np.testing.assert_allclose(norm, expected, atol=1e-4)
    assert set(np.unique(mask)) <= {0.0, 1.0}
    np.testing.assert_array_equal(mask, (expected > 1.0).astype(float))
    result = json.loads(Path(job.stdout_path).read_text())
    assert result["maps"]["normalised"]["grid"] == list(source.shape)
    assert f"mask_fraction: {mask.mean():.4g}" in rec.dialogs[0]


def _builtin_map_predictor() -> str | None:
    """A built-in predictor whose only required input is a map (e.g. a classical solvent mask), if any."""
    env = {k: v for k, v in os.environ.items() if k not in ("CRYSPLUGINS_PLUGINS", "PYTHONPATH")}
    env["CRYSPLUGINS_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    proc = subprocess.run(helpers.crysplugins_command() + ["list", "--json"], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        return None
    for row in json.loads(proc.stdout)["predictors"]:
        required = [i["kind"] for i in row["inputs"] if i["required"]]
        groups: dict[str, set] = {}
        for i in row["inputs"]:
            if i.get("group"):
                groups.setdefault(i["group"], set()).add(i["kind"])
        map_alone = required in ([], ["map"]) and any(i["kind"] == "map" for i in row["inputs"]) \
            and all("map" in kinds for kinds in groups.values())
        if map_alone and any(o["kind"] in ("map", "mask") for o in row["outputs"]):
            return row["name"]
    return None


def test_round_trip_with_a_builtin_map_predictor(monkeypatch, tmp_path):
    """The same round trip with an installed built-in predictor that takes a map (skipped if none yet)."""
    name = _builtin_map_predictor()
    if name is None:
        pytest.skip("no built-in predictor takes only a map yet")
    app, coot, rec, mc = start_coot(monkeypatch, tmp_path, load_fixture_map, only_test_plugin=False,
                                    CRYSPLUGINS_DISABLE_PLUGIN_AUTOLOAD="1")
    job = rec.activate("crysplugins", f"{name}...")
    rec.run_timers(timeout=120)
    if job.returncode != 0:
        # a predictor may refuse a 12^3 test map with one clear sentence: that is shown, not a crash
        assert rec.dialogs and rec.dialogs[0].startswith(f"crysplugins {name} failed:\n")
        pytest.skip(f"{name} refused the small fixture map: {rec.dialogs[0].splitlines()[1]}")
    source, cell = read_values(helpers.MAP)
    read = rec.called("read_ccp4_map")
    assert read
    for path, _ in read:
        imol = [i for i, m in coot.molecules.items() if m["path"] == path][-1]
        values, file_cell = read_values(path)
        assert file_cell.approx(cell, 1e-3)
        check_in_container(mc, imol, tmp_path / f"check_{imol}.ccp4", values.shape, cell)


def test_round_trip_builtin_charge_flipping_from_the_maps_mtz(monkeypatch, tmp_path):
    """A map Coot calculated from an MTZ (read_mtz FWT/PHWT): the reflection predictor gets that MTZ
    with the observed F picked (never FWT), and its density map comes back into the container."""
    listing = subprocess.run(helpers.crysplugins_command() + ["list", "--json"], capture_output=True, text=True)
    if "charge-flipping" not in listing.stdout:
        pytest.skip("the built-in charge-flipping predictor is not installed")
    app, coot, rec, mc = start_coot(monkeypatch, tmp_path, lambda c: c.load_mtz(str(helpers.MTZ), "FWT", "PHWT"),
                                    only_test_plugin=False, CRYSPLUGINS_PLUGINS="charge_flipping")
    assert app.menu_names == ["charge-flipping"]
    job = rec.activate("crysplugins", "charge-flipping...")
    flag = input_flag(app.predictors["charge-flipping"], "reflections")
    assert job.argv[job.argv.index(flag) + 1] == str(helpers.MTZ)
    assert not any(a.endswith("-columns") for a in job.argv)  # FWT is no observed amplitude: the CLI picks F
    rec.run_timers(timeout=120)
    assert job.returncode == 0, Path(job.stderr_path).read_text()
    result = json.loads(Path(job.stdout_path).read_text())
    (path, _), = rec.called("read_ccp4_map")
    imol = [i for i, m in coot.molecules.items() if m["path"] == path][-1]
    assert mc.get_molecule_name(imol) == "crysplugins charge-flipping: density"
    grid = result["maps"]["density"]["grid"]
    cell = gemmi.UnitCell(*result["maps"]["density"]["cell"])
    assert cell.approx(gemmi.UnitCell(18, 18, 18, 90, 90, 90), 1e-4)
    check_in_container(mc, imol, tmp_path / "cf_from_coot.ccp4", grid, cell)
    assert "dm_score:" in rec.dialogs[0]
    assert rec.called("make_and_draw_map") == []  # the density map is shown; the phases MTZ is not doubled


# ------------------------------------------- every built-in menu action on a map Coot made from an MTZ

PATTERSON_EXAMPLE = Path(__file__).resolve().parents[1] / "crysplugins" / "data" / "examples" / "patterson_density"
#: predictor -> (MTZ Coot calculates the map from, F, PHI, what the user types into the script's dialogs)
MTZ_MAPS = {
    "solvent-mask": (helpers.MTZ, "FWT", "PHWT", {}),
    "solvent-mask-local-variance": (helpers.MTZ, "FWT", "PHWT", {"--solvent-fraction": "0.5"}),
    "solvent-content": (helpers.MTZ, "FWT", "PHWT", {"sequence": "MKVLAAGIVG"}),
    "charge-flipping": (helpers.MTZ, "FWT", "PHWT", {}),
    "patterson-density": (PATTERSON_EXAMPLE / "2XHE_1_460_phases.mtz", "F", "PHI", {"sequence": "TM"}),
}


def input_flag(row: dict, kind: str) -> str:
    """The flag of the first input of ``kind`` in a ``crysplugins list --json`` row."""
    spec = next(i for i in row["inputs"] if i["kind"] == kind)
    return spec.get("flag") or "--" + spec["name"].replace("_", "-")


def answer_dialogs(rec, answers: dict):
    """Type the answers into the script's one-line dialogs until the prediction starts."""
    job = None
    while job is None and rec.entry_dialogs:
        label, handler = rec.entry_dialogs.pop(0)
        key = next(k for k in answers if k in label)
        job = handler(answers[key])
    return job


@pytest.mark.parametrize("generation", ["1", "0.9"])
@pytest.mark.parametrize("name", sorted(MTZ_MAPS))
def test_menu_action_on_a_map_made_from_an_mtz(monkeypatch, tmp_path, name, generation):
    """The README's main workflow: open an MTZ in Coot, choose a crysplugins item.  Coot's map code is
    the real coot_headless_api; the command is the real CLI; maps come back into the container."""
    mtz_path, f, phi, answers = MTZ_MAPS[name]
    app, coot, rec, mc = start_coot(monkeypatch, tmp_path, lambda c: c.load_mtz(str(mtz_path), f, phi), generation,
                                    only_test_plugin=False, CRYSPLUGINS_DISABLE_PLUGIN_AUTOLOAD="1")
    if name not in app.menu_names:
        pytest.skip(f"the built-in {name} predictor is not installed")
    row = app.predictors[name]
    job = rec.activate("crysplugins", f"{name}...") or answer_dialogs(rec, answers)
    assert job is not None, rec.dialogs
    argv = job.argv
    # one member per group of alternatives (the command refuses a map and reflections together) ...
    for group in {i["group"] for i in row["inputs"] if i.get("group")}:
        flags = [i.get("flag") or "--" + i["name"].replace("_", "-") for i in row["inputs"] if i.get("group") == group]
        assert sum(flag in argv for flag in flags) <= 1, (group, argv)
    # ... and a Patterson input never gets the 2mFo-DFc map
    assert not any(a.startswith("--patterson") for a in argv)
    exported = [args[1] for args in rec.called("export_map")]
    if exported:  # (a run that first asked for a value exported once more when it started)
        assert exported[-1] == argv[argv.index(input_flag(row, "map")) + 1]
    rec.run_timers(timeout=300)
    assert job.returncode == 0, Path(job.stderr_path).read_text()[-1500:]
    result = json.loads(Path(job.stdout_path).read_text())
    dialog = rec.dialogs[-1]
    assert dialog.startswith(f"{name} finished")
    for scalar in result["scalars"]:
        assert f"{scalar}:" in dialog
    read = [path for path, _ in rec.called("read_ccp4_map")]
    assert sorted(read) == sorted(p for p in result["files"].values() if p.endswith(".ccp4"))
    fraction_maps = {n for n, m in result["maps"].items() if m.get("units") in ("P(solvent)", "solvent=1")}
    absolute = {i for i, _ in rec.called("set_contour_level_absolute")}
    for out_name, info in result["maps"].items():
        path = result["files"][out_name]
        back = [i for i, m in coot.molecules.items() if m["path"] == path][-1]
        assert mc.get_molecule_name(back) == f"crysplugins {name}: {out_name}"
        assert (back in absolute) == (out_name in fraction_maps)
        check_in_container(mc, back, tmp_path / f"check_{back}.ccp4", info["grid"], gemmi.UnitCell(*info["cell"]))
    # the copy of Coot's map is gone once the prediction finished; the results stay for the session
    assert not any(os.path.exists(p) for p in exported)
