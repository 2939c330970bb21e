"""Bad user input on the real command line: one clear sentence on stderr, a non-zero exit, no output.

Each case runs ``python -m crysplugins.cli predict ...`` in a subprocess (so the console-script path,
not a test double, is what is checked).  Map inputs go to the example third-party predictor
``map-statistics`` (pip-installed into a temporary folder by the ``example_plugin_target`` fixture);
everything else to the built-in ``solvent-content``.  All fixture files are made in ``tmp_path``.
"""
from __future__ import annotations

import json
from pathlib import Path

import gemmi
import numpy as np
import pytest

from crysplugins.crystal import io
from crysplugins.crystal.fourier import p1_hkl
from crysplugins.interface import CrystalMap

CELL = "34.321 45.508 98.912 90 90 90"


def _files(d):
    """Write the bad (and one good) input files into folder ``d``; return {name: path}."""
    cmap = CrystalMap.from_array(np.random.default_rng(0).normal(size=(8, 10, 12)),
                                 gemmi.UnitCell(16, 20, 24, 90, 90, 90), "P 1")
    good_map = io.write_map(cmap, d / "good.ccp4")
    data = good_map.read_bytes()
    (d / "truncated.ccp4").write_bytes(data[: len(data) - 256])  # header intact, data cut short
    (d / "text.map").write_text("This is a text file that someone named .map by mistake.\n" * 40)
    (d / "empty.map").write_bytes(b"")
    (d / "empty.mtz").write_bytes(b"")
    (d / "bad.fasta").write_text(">bad\nMKTAYIAKQR1QISFVKSHFSRQ*\nLEERLGJ\n")
    cell = gemmi.UnitCell(34.3, 45.5, 98.9, 90, 90, 90)
    mtz = io.make_mtz(cell, gemmi.SpaceGroup("P 21 21 21"), np.array([[1, 0, 0], [0, 2, 0], [3, 4, 5]]),
                      {"FP": ("F", np.ones(3)), "SIGFP": ("Q", np.ones(3))})
    io.write_mtz(mtz, d / "data.mtz")
    packed = gemmi.UnitCell(9.643, 9.609, 19.029, 90, 101.224, 90)  # 5E5Z's cell: two LVHSSN leave 8 % solvent
    hkl = p1_hkl(packed, 2.0)
    io.write_mtz(io.make_mtz(packed, gemmi.SpaceGroup("P 1"), hkl,
                             {"F": ("F", np.random.default_rng(1).rayleigh(10.0, len(hkl)))}), d / "packed.mtz")
    return d


SC = ["solvent-content", "--cell", CELL, "--spacegroup", "P 21 21 21", "--resolution", "1.8"]

CASES = {
    # name: (argv after 'predict', needs the example plugin, words expected in the message)
    "missing map": (["map-statistics", "--map", "{d}/nowhere.map"], True, "does not exist"),
    "missing mtz": (["solvent-content", "--reflections", "{d}/nowhere.mtz", "--molecular-weight", "18000"],
                    False, "does not exist"),
    "missing sequence file": (SC + ["--sequence", "{d}/nowhere.fasta"], False, "does not exist"),
    "empty map": (["map-statistics", "--map", "{d}/empty.map"], True, "is empty"),
    "empty mtz": (["solvent-content", "--reflections", "{d}/empty.mtz", "--molecular-weight", "18000"],
                  False, "is empty"),
    "text named .map": (["map-statistics", "--map", "{d}/text.map"], True, "not a readable CCP4/MRC map"),
    "truncated map": (["map-statistics", "--map", "{d}/truncated.ccp4"], True, "not a readable CCP4/MRC map"),
    "mtz without the named column": (["solvent-content", "--reflections", "{d}/data.mtz",
                                      "--reflections-columns", "F=FOBS", "--molecular-weight", "18000"],
                                     False, "has no column 'FOBS'"),
    "text file as mtz": (["solvent-content", "--reflections", "{d}/text.map", "--molecular-weight", "18000"],
                         False, "not a readable MTZ file"),
    "sequence with non-residues": (SC + ["--sequence", "MKTAYIAKQR1QISFV#"], False, "not standard residues: #1"),
    "fasta with non-residues": (SC + ["--sequence", "{d}/bad.fasta"], False, "not standard residues: 1J"),
    "negative resolution": (["solvent-content", "--cell", CELL, "--spacegroup", "19", "--sequence", "MKTAYIAK",
                             "--resolution", "-2.5"], False, "--resolution must be at least"),
    "resolution not a number": (["solvent-content", "--cell", CELL, "--spacegroup", "19", "--sequence", "MKV",
                                 "--resolution", "high"], False, "must be a number"),
    "bad cell": (["solvent-content", "--cell", "34 45 0 90 90 90", "--spacegroup", "19", "--sequence", "MKV",
                  "--resolution", "2"], False, "not a valid unit cell"),
    "unknown space group": (["solvent-content", "--cell", CELL, "--spacegroup", "P 7 7", "--sequence", "MKV",
                             "--resolution", "2"], False, "not a space group"),
    "molecule too big": (SC + ["--molecular-weight", "9e6"], False, "does not fit"),
    "no composition": (SC, False, "needs one of --sequence or --molecular-weight"),
    "unknown predictor": (["no-such-predictor"], False, "There is no predictor called"),
    "packed cell, transformer": (["patterson-density", "--reflections", "{d}/packed.mtz", "--sequence",
                                  "LVHSSNLVHSSN"], False, "only 8 % solvent"),
    "packed cell, hybrid": (["fragment-phasing", "--reflections", "{d}/packed.mtz", "--sequence", "LVHSSNLVHSSN"],
                            False, "only 8 % solvent"),
}


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    return _files(tmp_path_factory.mktemp("bad_inputs"))


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_gives_one_sentence(case, bad_files, example_plugin_target, tmp_path, cli):
    argv, needs_plugin, expected = CASES[case]
    argv = [a.format(d=bad_files) for a in argv]
    out_dir = tmp_path / "out"
    quiet = ["--quiet"] if case != "molecule too big" else []  # one case with the progress bar on
    proc = cli("predict", *argv, "--out", str(out_dir), *quiet,
               pythonpath=example_plugin_target if needs_plugin else None)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    message = lines[0]
    assert message.startswith("error: ") and message.endswith("."), message
    assert expected in message, message
    assert proc.stdout == ""
    assert not out_dir.exists() or not any(out_dir.iterdir())


def test_good_input_does_write(bad_files, example_plugin_target, tmp_path, cli):
    """The control: the same command with a good map succeeds and writes its outputs."""
    out_dir = tmp_path / "out"
    proc = cli("predict", "map-statistics", "--map", str(bad_files / "good.ccp4"), "--out", str(out_dir),
               "--quiet", pythonpath=example_plugin_target)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out_dir.iterdir()) == ["result.json", "sigma_scaled.ccp4"]


# ------------------------------------------------------------------------- columns, folders, examples

def _phased_mtz(path, labels):
    cell = gemmi.UnitCell(30, 40, 50, 90, 90, 90)
    hkl = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 1], [2, 3, 4], [0, 0, 2]])
    types = {"FP": "F", "SIGFP": "Q", "FWT": "F", "PHWT": "P", "PHIB": "P", "FOM": "W", "PHIC": "P", "FC": "F"}
    columns = {label: (types[label], np.linspace(0.2, 0.9, len(hkl))) for label in labels}
    return io.write_mtz(io.make_mtz(cell, gemmi.SpaceGroup("P 21 21 21"), hkl, columns), path)


@pytest.mark.parametrize("labels, given, expected", [
    # map coefficients with their own phases, never weighted by FOM
    (("FP", "SIGFP", "FWT", "PHWT", "FOM"), {}, {"F": "FWT", "PHI": "PHWT"}),
    # observed amplitudes with experimental phases and their FOM
    (("FP", "SIGFP", "PHIB", "FOM", "FC", "PHIC"), {}, {"F": "FP", "PHI": "PHIB", "FOM": "FOM", "SIGF": "SIGFP"}),
    # a column named by hand fixes its partner
    (("FP", "SIGFP", "FWT", "PHWT", "PHIB", "FOM"), {"F": "FP"},
     {"F": "FP", "PHI": "PHIB", "FOM": "FOM", "SIGF": "SIGFP"}),
    (("FP", "SIGFP", "FWT", "PHWT", "FC", "PHIC", "FOM"), {"PHI": "PHIC"}, {"F": "FC", "PHI": "PHIC"}),
    (("FP", "SIGFP", "FWT", "PHWT", "FOM"), {"F": "FWT", "PHI": "PHWT"}, {"F": "FWT", "PHI": "PHWT"}),
])
def test_amplitudes_and_phases_are_picked_as_one_set(tmp_path, labels, given, expected):
    refl = io.read_mtz(_phased_mtz(tmp_path / "d.mtz", labels), columns=given, need=("F", "PHI"), want=("FOM",))
    assert refl.columns == expected
    assert len(refl.notes) == (1 if set(expected) - set(given) else 0)


def test_fp_is_never_paired_with_phwt(tmp_path):
    path = _phased_mtz(tmp_path / "d.mtz", ("FP", "SIGFP", "PHWT", "FOM"))
    with pytest.raises(Exception, match="no PHI"):
        io.read_mtz(path, need=("F", "PHI"), want=("FOM",), columns_flag="--reflections-columns")
    with pytest.raises(Exception, match="no phase column known to go with FP; name one with --reflections-columns"):
        io.read_mtz(path, columns={"F": "FP"}, need=("F", "PHI"), columns_flag="--reflections-columns")


def test_shared_1rx4_file_uses_every_map_coefficient():
    path = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "diffraction" / "1rx4_phases.mtz"
    if not path.exists():
        pytest.skip("../shared/corpus/diffraction/1rx4_phases.mtz is not here")
    refl = io.read_mtz(path, need=("F", "PHI"), want=("FOM",))
    assert refl.columns == {"F": "FWT", "PHI": "PHWT"}
    ok = np.isfinite(refl.values("F")) & np.isfinite(refl.values("PHI"))
    assert int(ok.sum()) == refl.mtz.nreflections  # FP (fewer measured) would drop reflections


def test_output_folder_holds_one_run(tmp_path):
    from crysplugins.errors import CrysError
    from crysplugins.request import prepare_output_folder

    out = tmp_path / "out"
    assert prepare_output_folder(out) == out and not out.exists()  # nothing made before the work
    out.mkdir()
    (out / "density.ccp4").write_text("x")
    with pytest.raises(CrysError, match="not empty.*--overwrite"):
        prepare_output_folder(out)
    with pytest.raises(CrysError, match="no crysplugins run wrote"):
        prepare_output_folder(out, overwrite=True)  # a folder of the user's own files is never emptied
    (out / "result.json").write_text("{}")
    (out / "old").mkdir()
    prepare_output_folder(out, overwrite=True)
    assert list(out.iterdir()) == []


def test_examples_info_and_charge_flipping_wording(tmp_path, capsys):
    from crysplugins import cli

    assert cli.main(["examples", "--out", str(tmp_path / "ex")]) == 0
    assert (tmp_path / "ex" / "fragment" / "2XHE_1_460_amplitudes.mtz").stat().st_size > 0
    assert cli.main(["examples", "--out", str(tmp_path / "ex")]) == 2  # no silent replacement
    assert cli.main(["examples", "--out", str(tmp_path / "ex"), "--overwrite"]) == 0
    capsys.readouterr()
    assert cli.main(["info", "patterson-density"]) == 0
    screen = capsys.readouterr().out
    assert len(screen.splitlines()) <= 40 and "--reflections" in screen and "/work/" not in screen
    assert cli.main(["info", "patterson-density", "--json"]) == 0
    card = json.loads(capsys.readouterr().out)["model_card"]
    assert "/work/" not in json.dumps(card) and not json.dumps(card["data"]).count('": "/')
    amplitudes = str(tmp_path / "ex" / "fragment" / "2XHE_1_460_amplitudes.mtz")
    assert cli.main(["predict", "charge-flipping", "--reflections", amplitudes, "--sequence", "TM", "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "of up to 8 random starts" in text or "8 random starts run" in text
