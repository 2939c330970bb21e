"""Hostile input to every command: one sentence on stderr, a non-zero exit, no traceback, no partial file.

Each case runs the command line's ``main`` in this process (stdout and stderr captured, exit code returned;
the same handlers as ``python -m crysplugins.cli``), except the cases marked ``child``: those that could
kill the process with a signal or a huge allocation if the checks regressed, or that need their own
process (a file-size limit, an install without torch, a plugin on ``PYTHONPATH``) run the real command line
in a subprocess.  ``benchmarks/hostile_inputs.py`` runs every case in a subprocess.  The bad files
(maps with a zero grid sampling, NaN or infinite voxels, a complex mode, a scrambled axis order; MTZ files
with a column type that is not text, columns full of NaN or infinity; a binary manifest...) are written into
a module-scoped folder.  ``{d}`` in a case stands for that folder, ``{out}`` for the case's output folder,
which must be empty or absent afterwards.  A case either names the words its sentence must hold, or, for
argparse's own refusals (a usage line and ``prog: error: ...``), is marked ``usage``.
"""
from __future__ import annotations

import json
import os
import resource
import struct
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import gemmi
import numpy as np
import pytest

from crysplugins.crystal import io
from crysplugins.interface import CrystalMap

CELL = "34.321 45.508 98.912 90 90 90"
SC = ["predict", "solvent-content", "--cell", CELL, "--spacegroup", "19", "--resolution", "1.8"]
LV = ["predict", "solvent-mask-local-variance", "--solvent-fraction", "0.5"]
REPO = Path(__file__).resolve().parents[1]
GOOD_PLUGIN = Path(__file__).resolve().parent / "data" / "fault_plugins" / "good"
REFINE = ["refine", "--mtz", "{d}/data.mtz", "--solvent-fraction", "0.5", "--cycles", "2", "--out", "{out}"]


@dataclass
class Case:
    argv: list[str]
    words: str = ""            # expected in the one sentence; "" with usage=True for argparse refusals
    usage: bool = False        # argparse's usage + error lines
    env: dict = field(default_factory=dict)
    hide_torch: bool = False   # run as in an install without torch
    fsize_limit: int = 0       # bytes: RLIMIT_FSIZE of the child (a file-size limit hit while writing)
    skip_root: bool = False    # needs a folder its user cannot write into (see read_only_holds)
    child: bool = False        # run the real command line in a subprocess (signals, limits, environment)


CASES: dict[str, Case] = {
    # --- numbers
    "molecular weight nan": Case(SC + ["--molecular-weight", "nan"], "--molecular-weight must be a finite number"),
    "molecular weight inf": Case(SC + ["--molecular-weight", "inf"], "--molecular-weight must be a finite number"),
    "resolution nan": Case(SC + ["--molecular-weight", "18000", "--resolution", "nan"], "finite number"),
    "radius nan": Case(LV + ["--map", "{d}/good.ccp4", "--radius", "nan", "--out", "{out}"],
                       "--radius must be a finite number"),
    "radius negative": Case(LV + ["--map", "{d}/good.ccp4", "--radius", "-3"], "--radius must be at least"),
    "solvent fraction above 1": Case(["predict", "solvent-mask-local-variance", "--map", "{d}/good.ccp4",
                                      "--solvent-fraction", "1.5"], "--solvent-fraction must be at most"),
    "starts not a number": Case(["predict", "charge-flipping", "--mtz", "{d}/data.mtz", "--starts", "abc"],
                                "--starts must be a number"),
    "cell with nan": Case(["predict", "solvent-content", "--cell", "nan 45 98 90 90 90", "--spacegroup", "19",
                           "--molecular-weight", "18000"], "not a valid unit cell"),
    "space group 999": Case(SC + ["--molecular-weight", "18000", "--spacegroup", "999"], "not a space group"),
    # --- sequences
    "sequence with a trailing dot": Case(SC + ["--sequence", "MKV."], "not standard residues"),
    "long inline sequence with a digit": Case(SC + ["--sequence", "MKVLA" * 60 + "1"], "not standard residues: 1"),
    "sequence file missing": Case(SC + ["--sequence", "{d}/nowhere.fasta"], "does not exist"),
    # --- maps
    "map grid sampling zero": Case(LV + ["--map", "{d}/mx0.ccp4"], "MX, MY, MZ = 0", child=True),
    "map with NaN voxels": Case(LV + ["--map", "{d}/nan27.ccp4"], "holds 27 NaN or infinite values"),
    "map all infinite": Case(LV + ["--map", "{d}/inf.ccp4"], "NaN or infinite values"),
    "map truncated": Case(LV + ["--map", "{d}/truncated.ccp4"], "truncated"),
    "map complex mode": Case(LV + ["--map", "{d}/mode4.ccp4"], "map mode 4"),
    "map axis order": Case(LV + ["--map", "{d}/axes.ccp4"], "invalid axis order"),
    "map zero angle": Case(LV + ["--map", "{d}/angle0.ccp4"], "invalid unit cell in its header"),
    "map nsymbt": Case(LV + ["--map", "{d}/nsymbt.ccp4"], "symmetry-record length"),
    "map huge grid": Case(LV + ["--map", "{d}/huge.ccp4"], "too large to read", child=True),
    "map cell grid far beyond its data": Case(LV + ["--map", "{d}/sparse.ccp4"], "covers only 0.0 %", child=True),
    "map is text": Case(LV + ["--map", "{d}/text.map"], "not a readable CCP4/MRC map"),
    "map is empty": Case(LV + ["--map", "{d}/empty.map"], "is empty"),
    "map is a folder": Case(LV + ["--map", "{d}"], "is a folder"),
    # --- MTZ
    "mtz type byte not text": Case(LV + ["--reflections", "{d}/badtype.mtz"], "damaged column header"),
    "mtz F named a phase": Case(LV + ["--reflections", "{d}/data.mtz", "--reflections-columns", "F=PHWT,PHI=FWT"],
                                "'PHWT' of data.mtz is a phase"),
    "mtz F named a sigma": Case(LV + ["--reflections", "{d}/data.mtz", "--reflections-columns", "F=SIGFP"],
                                "is a standard deviation"),
    "mtz FOM named an amplitude": Case(LV + ["--reflections", "{d}/data.mtz", "--reflections-columns",
                                            "FOM=FP"], "FOM needs a weight"),
    "mtz F all NaN": Case(LV + ["--reflections", "{d}/nan.mtz"], "holds no numbers"),
    "mtz F infinite": Case(LV + ["--reflections", "{d}/inf.mtz"], "holds infinite values"),
    "mtz column choice without =": Case(LV + ["--reflections", "{d}/data.mtz", "--reflections-columns", "F"],
                                        "not a column choice"),
    "mtz header position outside the file": Case(LV + ["--reflections", "{d}/headerpos.mtz"], "header position",
                                                 child=True),
    "charge flipping on a protein cell": Case(["predict", "charge-flipping", "--mtz", "{d}/protein.mtz", "--out",
                                               "{out}"], "too large for charge flipping"),
    "fragment phasing on a protein cell": Case(["predict", "fragment-phasing", "--mtz", "{d}/protein.mtz", "--sequence",
                                                "GAGAGA", "--out", "{out}"], "too large for charge flipping"),
    "mtz is text": Case(LV + ["--reflections", "{d}/text.map"], "not a readable MTZ file"),
    # --- output folders and writing
    "out is a file": Case(SC + ["--molecular-weight", "18000", "--out", "{d}/a_file"], "is a file, not a folder"),
    "out below a file": Case(SC + ["--molecular-weight", "18000", "--out", "{d}/a_file/sub"], "is a file"),
    "out cannot be made": Case(LV + ["--map", "{d}/good.ccp4", "--out", "/proc/crysplugins-out"], "cannot be"),
    "out read-only": Case(LV + ["--map", "{d}/good.ccp4", "--out", "{d}/readonly/out"], "not writable",
                          skip_root=True),
    "file-size limit while writing": Case(LV + ["--map", "{d}/good.ccp4", "--out", "{out}"], "Could not write",
                                          fsize_limit=2000, child=True),
    "demo out is a file": Case(["demo", "--out", "{d}/a_file"], "is a file, not a folder"),
    # --- predictors, models, plugins
    "unknown predictor": Case(["predict", "no-such-predictor"], "There is no predictor called"),
    "info of unknown predictor": Case(["info", "no-such-predictor"], "There is no predictor called"),
    "model given as a path": Case(["predict", "patterson-density", "--reflections", "{d}/data.mtz", "--sequence",
                                   "GA", "--model", "../../somewhere/x", "--out", "{out}"], "is not a model name"),
    "model card's onnx outside its folder": Case(["predict", "patterson-density", "--reflections", "{d}/data.mtz",
                                                  "--sequence", "GA", "--model", "reccrysformer_dipeptide"],
                                                 "which is not a file in the card's folder",
                                                 env={"CRYSPLUGINS_MODELS": "{d}/models"}),
    "model sha256 mismatch": Case(["predict", "patterson-density", "--reflections", "{d}/data.mtz", "--sequence",
                                   "GA", "--model", "bad_sha"], "does not match the sha256",
                                  env={"CRYSPLUGINS_MODELS": "{d}/models"}),
    "model unknown": Case(["predict", "patterson-density", "--reflections", "{d}/data.mtz", "--sequence", "GA",
                           "--model", "no_such_model"], "There is no model named"),
    "plugin timeout not a number": Case(["predict", "fault-good"], "CRYSPLUGINS_PLUGIN_TIMEOUT must be a number",
                                        env={"CRYSPLUGINS_PLUGIN_TIMEOUT": "soon", "PYTHONPATH": str(GOOD_PLUGIN),
                                             "CRYSPLUGINS_DISABLE_PLUGIN_AUTOLOAD": "0"}, child=True),
    # --- refine, evaluate, dataset, train, export, coot-install
    "refine map grid sampling zero": Case(REFINE + ["--map", "{d}/mx0.ccp4"], "MX, MY, MZ = 0", child=True),
    "refine columns of the wrong type": Case(REFINE + ["--map", "{d}/good.ccp4", "--columns", "F=PHWT"],
                                             "is a phase"),
    "refine solvent fraction nan": Case(["refine", "--mtz", "{d}/data.mtz", "--map", "{d}/good.ccp4",
                                         "--solvent-fraction", "nan", "--out", "{out}"], "--solvent-fraction"),
    "evaluate missing folder": Case(["evaluate", "--predictor", "solvent-content", "--mtz-dir", "{d}/nowhere",
                                     "--out", "{out}"], "nowhere"),
    "evaluate option not a number": Case(["evaluate", "--predictor", "charge-flipping:starts=abc", "--mtz-dir",
                                          "{d}/evalset", "--out", "{out}"], "starts"),
    "dataset binary manifest": Case(["dataset", "build", "--structures", "{d}/structures", "--manifest",
                                     "{d}/binary.bin", "--out", "{out}"], "manifest"),
    "dataset missing structures": Case(["dataset", "build", "--structures", "{d}/nowhere", "--out", "{out}"],
                                       "nowhere"),
    "train lr nan": Case(["train", "solvent-unet", "--data", "{d}/nowhere", "--out", "{out}", "--lr", "nan"],
                         "lr must be"),
    "train lr inf": Case(["train", "reccrysformer", "--data", "{d}/ds", "--out", "{out}", "--lr", "inf"], "lr must be"),
    "train set not json": Case(["train", "reccrysformer", "--data", "{d}/ds", "--out", "{out}", "--max-steps", "1",
                                "--set", "model.depth=notjson"], "model settings"),
    "train resume without a checkpoint": Case(["train", "reccrysformer", "--data", "{d}/ds", "--out", "{out}",
                                               "--resume", "--max-steps", "1"], "there is no checkpoint"),
    "train resume from a corrupt checkpoint": Case(["train", "reccrysformer", "--data", "{d}/ds", "--out",
                                                    "{d}/corrupt_run", "--resume", "--max-steps", "1"],
                                                   "not a readable crysplugins checkpoint"),
    "train tiny config on a default dataset": Case(["train", "reccrysformer", "--config", "reccrysformer_tiny",
                                                    "--data", "{d}/ds", "--out", "{out}", "--max-steps", "1"],
                                                   "residue boxes"),
    "export a corrupt checkpoint": Case(["export", "{d}/corrupt_run", "--models-dir", "{out}"],
                                        "not a readable crysplugins checkpoint"),
    "train without torch": Case(["train", "solvent-unet", "--data", "{d}/nowhere", "--out", "{out}"], "torch",
                                hide_torch=True, child=True),
    "export without torch": Case(["export", "{d}/nowhere_run", "--models-dir", "{out}"], "torch", hide_torch=True,
                                 child=True),
    "coot-install into a file": Case(["coot-install", "--coot-dir", "{d}/a_file"], "a_file"),
}


# ------------------------------------------------------------------------------------------ fixtures

def _patched(src: bytes, offset: int, fmt: str, *values) -> bytes:
    b = bytearray(src)
    struct.pack_into(fmt, b, offset, *values)
    return bytes(b)


def _write_maps(d: Path) -> None:
    cmap = CrystalMap.from_array(np.random.default_rng(0).normal(size=(8, 10, 12)),
                                 gemmi.UnitCell(16, 20, 24, 90, 90, 90), "P 1")
    good = io.write_map(cmap, d / "good.ccp4").read_bytes()
    (d / "mx0.ccp4").write_bytes(_patched(good, 28, "<i", 0))
    (d / "mode4.ccp4").write_bytes(_patched(good, 12, "<i", 4))
    (d / "axes.ccp4").write_bytes(_patched(good, 64, "<3i", 1, 1, 3))
    (d / "angle0.ccp4").write_bytes(_patched(good, 52, "<f", 0.0))
    (d / "nsymbt.ccp4").write_bytes(_patched(good, 92, "<i", 7))
    (d / "sparse.ccp4").write_bytes(_patched(good, 28, "<3i", 400, 400, 400))
    (d / "huge.ccp4").write_bytes(_patched(good, 28, "<3i", 4096, 4096, 4096))
    (d / "truncated.ccp4").write_bytes(good[:-300])
    values = cmap.array.copy()
    values.flat[:27] = np.nan
    io.write_map(CrystalMap.from_array(values, cmap.cell, "P 1"), d / "nan27.ccp4")
    io.write_map(CrystalMap.from_array(np.full((8, 10, 12), np.inf), cmap.cell, "P 1"), d / "inf.ccp4")
    (d / "text.map").write_text("This is a text file that someone named .map by mistake.\n" * 40)
    (d / "empty.map").write_bytes(b"")


def _write_mtz(d: Path) -> None:
    cell = gemmi.UnitCell(16, 20, 24, 90, 90, 90)
    hkl = np.array([[h, k, l] for h in range(0, 4) for k in range(0, 4) for l in range(1, 4)])
    n = len(hkl)
    rng = np.random.default_rng(1)
    f, sig, phi, fom = rng.uniform(5, 50, n), np.ones(n), rng.uniform(0, 360, n), np.full(n, 0.8)

    def write(name, f_values):
        mtz = io.make_mtz(cell, gemmi.SpaceGroup("P 1"), hkl, {
            "FP": ("F", f_values), "SIGFP": ("Q", sig), "FWT": ("F", f_values), "PHWT": ("P", phi),
            "FOM": ("W", fom)})
        return io.write_mtz(mtz, d / name)

    data = write("data.mtz", f).read_bytes()
    write("nan.mtz", np.full(n, np.nan))
    write("inf.mtz", np.where(np.arange(n) == 3, np.inf, f))
    at = data.index(b"COLUMN FP")
    record = bytearray(data[at:at + 80])
    fields = record.split()
    type_at = record.index(b" F ", 9) + 1 if b" F " in record[9:] else 39
    assert fields[2] == b"F", fields
    record[type_at] = 0xD5  # a column type byte that is not UTF-8
    (d / "headerpos.mtz").write_bytes(_patched(data, 4, "<i", 2 ** 31 - 1))  # gemmi sized a read by it
    (d / "badtype.mtz").write_bytes(data[:at] + bytes(record) + data[at + 80:])
    # a protein crystal (P212121 to 1.8 Å: 15,000 reflections, 55,000 once expanded to P1)
    pcell, psg = gemmi.UnitCell(34.321, 45.508, 98.912, 90, 90, 90), gemmi.SpaceGroup("P 21 21 21")
    phkl = gemmi.make_miller_array(pcell, psg, 1.8)
    pf = rng.uniform(5, 50, len(phkl))
    io.write_mtz(io.make_mtz(pcell, psg, phkl, {"FP": ("F", pf), "SIGFP": ("Q", np.ones(len(phkl)))}),
                 d / "protein.mtz")


def _write_models(folder: Path) -> None:
    """A user's models folder: a card that hides the shipped default and names an ONNX file outside its
    folder, and a card whose ONNX file does not match its sha256."""
    folder.mkdir()
    shipped = json.loads((REPO / "models" / "reccrysformer_dipeptide.json").read_text())
    (folder / "reccrysformer_dipeptide.json").write_text(json.dumps(dict(shipped, onnx="../../outside.onnx")))
    (folder / "bad_sha.onnx").write_bytes(b"not the model the card describes")
    (folder / "bad_sha.json").write_text(json.dumps(dict(shipped, name="bad_sha", onnx="bad_sha.onnx")))


@pytest.fixture(scope="module")
def bad_dir(tmp_path_factory) -> Path:
    d = make_bad_dir(tmp_path_factory.mktemp("hostile"))
    yield d
    release_bad_dir(d)


def read_only_holds(d: Path) -> bool:
    """Whether ``d/readonly`` refuses this user a new entry (root ignores mode bits: it is made immutable)."""
    try:
        (d / "readonly" / "probe").mkdir()
    except OSError:
        return True
    (d / "readonly" / "probe").rmdir()
    return False


def release_bad_dir(d: Path) -> None:
    """Undo the immutable flag of ``d/readonly`` so the folder can be removed."""
    if os.geteuid() == 0:
        subprocess.run(["chattr", "-i", str(d / "readonly")], capture_output=True)


def make_bad_dir(d: Path) -> Path:
    """Write every hostile file the cases use into folder ``d`` (also used by benchmarks/hostile_inputs.py)."""
    _write_maps(d)
    _write_mtz(d)
    (d / "a_file").write_text("not a folder\n")
    (d / "binary.bin").write_bytes(bytes(np.random.default_rng(2).integers(0, 256, 4096, dtype=np.uint8)))
    (d / "structures").mkdir()
    (d / "structures" / "frag.pdb").write_bytes((Path(__file__).parent / "data" / "frag5.pdb").read_bytes())
    (d / "evalset").mkdir()
    (d / "evalset" / "x_amplitudes.mtz").write_bytes((d / "data.mtz").read_bytes())
    (d / "evalset" / "x_phases.mtz").write_bytes((d / "data.mtz").read_bytes())
    (d / "readonly").mkdir()
    (d / "readonly").chmod(0o555)
    if os.geteuid() == 0:  # root writes through mode bits; an immutable folder (ext4, xfs...) refuses it too
        subprocess.run(["chattr", "+i", str(d / "readonly")], capture_output=True)
    _write_models(d / "models")
    (d / "corrupt_run").mkdir()
    (d / "corrupt_run" / "checkpoint.pt").write_bytes(bytes(range(256)) * 12)
    built = subprocess.run([sys.executable, "-m", "crysplugins.cli", "dataset", "build", "--structures",
                            str(Path(__file__).parent / "data" / "dataset"), "--out", str(d / "ds"), "--residues",
                            "5", "--max-examples", "4"], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    (d / "no_torch").mkdir()
    (d / "no_torch" / "torch.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'torch'\", name='torch')\n")
    return d


# ------------------------------------------------------------------------------------------ running

def run_case(case: Case, d: Path, out: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run one case's command line; the child gets the case's environment and limits."""
    argv = [a.format(d=d, out=out) for a in case.argv]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CRYSPLUGINS_DISABLE_PLUGIN_AUTOLOAD": "1",
           **{k: v.format(d=d, out=out) for k, v in case.env.items()}}
    env.pop("CRYSPLUGINS_PLUGINS", None)
    if case.hide_torch:
        env["PYTHONPATH"] = os.pathsep.join([str(d / "no_torch")] + [p for p in [env.get("PYTHONPATH")] if p])

    def limit():
        if case.fsize_limit:
            resource.setrlimit(resource.RLIMIT_FSIZE, (case.fsize_limit, case.fsize_limit))

    return subprocess.run([sys.executable, "-m", "crysplugins.cli", *argv], capture_output=True, text=True,
                          env=env, timeout=timeout, preexec_fn=limit, cwd=str(d))


def run_in_process(case: Case, d: Path, out: Path, monkeypatch, capsys) -> subprocess.CompletedProcess:
    """Run one case through ``crysplugins.cli.main`` here: the same handlers as the real command line, with
    the case's environment, a fresh host and the bad folder as working directory; argparse's exit is caught."""
    from crysplugins import cli, host

    argv = [a.format(d=d, out=out) for a in case.argv]
    for key in ("CRYSPLUGINS_PLUGINS", "CRYSPLUGINS_DEBUG", "CRYSPLUGINS_MODELS"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("CRYSPLUGINS_DISABLE_PLUGIN_AUTOLOAD", "1")
    for key, value in case.env.items():
        monkeypatch.setenv(key, value.format(d=d, out=out))
    monkeypatch.setattr(host, "_default_host", None)  # built again from this case's environment
    monkeypatch.chdir(d)
    capsys.readouterr()
    try:
        code = cli.main(argv)
    except SystemExit as exc:  # argparse's own refusals
        code = exc.code if isinstance(exc.code, int) else 1
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(argv, code, captured.out, captured.err)


def judge(case: Case, proc: subprocess.CompletedProcess, out: Path) -> str:
    """'' when the refusal is clean, else what is wrong with it."""
    if proc.returncode == 0:
        return "accepted (exit 0)"
    if proc.returncode < 0:
        return f"killed by signal {-proc.returncode}"
    if "Traceback" in proc.stderr:
        return "traceback"
    if "failed unexpectedly" in proc.stderr:  # the command line's last-resort sentence for a bug
        return "unexpected failure (a bug behind one sentence)"
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    if not lines:
        return "no message"
    if case.usage:
        if not lines[-1].startswith("usage:") and ": error: " not in lines[-1]:
            return f"not an argparse refusal: {lines[-1]}"
    else:
        if len(lines) != 1:
            return f"{len(lines)} lines on stderr"
        if not (lines[0].startswith("error: ") and lines[0].endswith(".")):
            return f"not one sentence: {lines[0]}"
        if case.words not in lines[0]:
            return f"message lacks {case.words!r}: {lines[0]}"
    if out.exists() and any(out.iterdir()):
        return f"left files in the output folder: {sorted(p.name for p in out.iterdir())}"
    return ""


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_input_is_refused_in_one_sentence(name, bad_dir, tmp_path, monkeypatch, capsys):
    case = CASES[name]
    if case.skip_root and not read_only_holds(bad_dir):
        pytest.skip("this user writes into read-only folders here (root without chattr)")
    out = tmp_path / "out"
    proc = run_case(case, bad_dir, out) if case.child else run_in_process(case, bad_dir, out, monkeypatch, capsys)
    verdict = judge(case, proc, out)
    assert verdict == "", f"{name}: {verdict}\nstderr: {proc.stderr[-1500:]}"
    assert not list(bad_dir.rglob("*.part"))  # no temporary file left behind anywhere


def test_controls_succeed(bad_dir, tmp_path):
    """The same commands with good values work: the refusals above are about the bad values."""
    seq = run_case(Case(["predict", "solvent-content", "--cell", "80 90 100 90 90 90", "--spacegroup", "19",
                         "--resolution", "2", "--sequence", "MKVLA" * 60, "--json"]), bad_dir, tmp_path / "a")
    assert seq.returncode == 0, seq.stderr  # 300 residues inline: a sequence, not a file name
    lv = run_case(Case(LV + ["--reflections", "{d}/data.mtz", "--reflections-columns",
                             "F=FP,PHI=PHWT", "--out", "{out}", "--quiet"]), bad_dir, tmp_path / "b")
    assert lv.returncode == 0, lv.stderr
    assert (tmp_path / "b" / "result.json").exists()


def test_list_into_a_closed_pipe_is_quiet(bad_dir):
    """`crysplugins list --json | head -1`: the reader has left; no BrokenPipeError traceback."""
    env = dict(os.environ, CRYSPLUGINS_DISABLE_PLUGIN_AUTOLOAD="1")
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first byte is written
    try:
        proc = subprocess.run([sys.executable, "-m", "crysplugins.cli", "list", "--json"], stdout=write_end,
                              stderr=subprocess.PIPE, text=True, env=env, timeout=120)
    finally:
        os.close(write_end)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr


def test_a_user_model_hiding_a_shipped_one_is_said(bad_dir):
    env = {**os.environ, "CRYSPLUGINS_DISABLE_PLUGIN_AUTOLOAD": "1", "CRYSPLUGINS_MODELS": str(bad_dir / "models")}
    run = [sys.executable, "-m", "crysplugins.cli"]
    listing = subprocess.run(run + ["list"], capture_output=True, text=True, env=env, timeout=120)
    assert listing.returncode == 0, listing.stderr
    note = f"note: The model 'reccrysformer_dipeptide' is taken from {bad_dir / 'models'}"
    assert note in listing.stdout
    as_json = subprocess.run(run + ["list", "--json"], capture_output=True, text=True, env=env, timeout=120)
    assert any("reccrysformer_dipeptide" in n for n in json.loads(as_json.stdout)["model_notes"])
    info = subprocess.run(run + ["info", "patterson-density"], capture_output=True, text=True, env=env, timeout=120)
    assert note in info.stdout
    plain = subprocess.run(run + ["list"], capture_output=True, text=True, timeout=120,
                           env={**env, "CRYSPLUGINS_MODELS": str(bad_dir / "structures")})
    assert "note:" not in plain.stdout  # nothing hidden, nothing said


class _NanPredictor:
    """A predictor whose numbers are not finite (a model that diverged): its results must still be JSON."""

    name = "nan-numbers"
    version = "0.1"
    summary = "returns NaN and infinite numbers"
    inputs = ()
    outputs = ()

    def example_inputs(self) -> dict:
        return {}

    def predict(self, request):
        from crysplugins.interface import Prediction, Scalar, Table

        return Prediction(scalars={"score": Scalar(float("nan")), "peak": Scalar(np.float32(np.inf))},
                          tables={"rows": Table(["a", "b"], [[1.0, float("nan")], [np.float64(-np.inf), 2]])},
                          meta={"history": [np.nan, 0.5], "array": np.array([1.0, np.nan])})


def _strict(text: str):
    def refuse(token):
        raise ValueError(f"not JSON: {token}")
    return json.loads(text, parse_constant=refuse)


def test_results_json_is_strict_when_a_predictor_returns_nan(tmp_path, monkeypatch, capsys):
    """result.json, --json and demo.json hold null where a predictor gave NaN or infinity, never a NaN token."""
    from crysplugins import cli
    from crysplugins.hookspecs import hookimpl
    from crysplugins.host import Host

    class Plugin:
        @hookimpl
        def register_predictors(self, register):
            register(_NanPredictor())

    monkeypatch.setattr(cli, "_host", lambda: Host(autoload=False, only=["nan_plugin"],
                                                       extra_plugins=[("nan_plugin", Plugin())]))
    assert cli.main(["predict", "nan-numbers", "--out", str(tmp_path / "p"), "--json"]) == 0
    printed = _strict(capsys.readouterr().out)
    written = _strict((tmp_path / "p" / "result.json").read_text())
    for result in (printed, written):
        assert result["scalars"]["score"]["value"] is None and result["scalars"]["peak"]["value"] is None
        assert result["tables"]["rows"]["rows"] == [[1.0, None], [None, 2]]
        assert result["meta"]["history"] == [None, 0.5]
    cli.main(["demo", "--out", str(tmp_path / "d"), "--quiet"])
    demo = _strict((tmp_path / "d" / "demo.json").read_text())
    assert demo["nan-numbers"]["status"] == "ok" and demo["nan-numbers"]["scalars"]["score"]["value"] is None
