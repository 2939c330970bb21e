"""Hostile inputs, counted: every command's bad-input table, the GUI's file loading, faulty plugins, fuzzed files.

Runs what the tests check, but counts instead of asserting, into ``benchmarks/out/hostile_inputs.json``:

* **commands**: every case of ``tests/test_bad_inputs.py`` (the real command line in a subprocess);
* **file loading** as the GUI does it (``crysplugins.inputs.load_input`` on each hostile map/MTZ/sequence,
  one child process per file, so a signal or a hang is seen);
* **plugins**: the fault-variant distributions of ``tests/data/fault_plugins`` through ``list``,
  ``predict`` and ``demo``;
* **fuzz**: the mutated CCP4/MTZ corpus of ``tests/test_fuzz_files.py`` (same seed, same files).

Each hostile input is classed *clean* (one sentence, non-zero exit, no partial file), *traceback* (a Python
traceback, or the command line's last-resort sentence for a bug), *crash* (killed by a signal), *hang* (no
answer within the time limit), *silent* (accepted as if fine), or *unclear* (refused, but not in one clear
sentence).  ``--baseline DIR`` runs the same inputs against another checkout's ``crysplugins`` package
(e.g. ``git archive <commit> crysplugins | tar -x -C DIR``) for a before/after comparison.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from figure_output import write_figure  # noqa: E402

CLASSES = ("clean", "traceback", "crash", "hang", "silent", "unclear")


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


BAD = _load("hostile_bad_inputs", REPO / "tests" / "test_bad_inputs.py")
FUZZ = _load("hostile_fuzz", REPO / "tests" / "test_fuzz_files.py")
FAULTS = _load("hostile_faults", REPO / "tests" / "test_plugin_faults.py")


def _classify(verdict: str) -> str:
    if not verdict:
        return "clean"
    if verdict.startswith(("traceback", "unexpected failure")):
        return "traceback"
    if verdict.startswith("killed by signal"):
        return "crash"
    if verdict.startswith("hang"):
        return "hang"
    if verdict.startswith("accepted"):
        return "silent"
    return "unclear"


def _run(case, d: Path, out: Path, timeout: float) -> str:
    try:
        proc = BAD.run_case(case, d, out, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"hang (no answer in {timeout:g} s)"
    return BAD.judge(case, proc, out)


def commands(d: Path, timeout: float) -> list[dict]:
    rows = []
    for name, case in BAD.CASES.items():
        if case.skip_root and not BAD.read_only_holds(d):
            continue
        with tempfile.TemporaryDirectory() as tmp:
            verdict = _run(case, d, Path(tmp) / "out", timeout)
        rows.append({"input": name, "class": _classify(verdict), "verdict": verdict})
        print(f"  {rows[-1]['class']:9s} {name} {verdict}", flush=True)
    return rows


#: files the GUI may be asked to open, and the loader kind it uses for them
GUI_FILES = [("map", f) for f in ("mx0.ccp4", "nan27.ccp4", "inf.ccp4", "truncated.ccp4", "mode4.ccp4", "axes.ccp4",
                                  "angle0.ccp4", "nsymbt.ccp4", "huge.ccp4", "sparse.ccp4", "text.map", "empty.map")] + \
            [("reflections", f) for f in ("badtype.mtz", "nan.mtz", "inf.mtz", "headerpos.mtz", "text.map",
                                          "empty.map")] + \
            [("sequence", f) for f in ("binary.bin", "empty.map")]

GUI_LOADER = r'''
import sys
from crysplugins.errors import CrysError
from crysplugins.inputs import load_input
from crysplugins.interface import InputSpec, Kind
kind, path = sys.argv[1], sys.argv[2]
spec = {"map": InputSpec("map", Kind.MAP, ""), "sequence": InputSpec("sequence", Kind.SEQUENCE, ""),
        "reflections": InputSpec("reflections", Kind.REFLECTIONS, "", columns=("F", "PHI?", "FOM?"))}[kind]
try:
    load_input(spec, path)
except CrysError as exc:
    print("error: " + str(exc), file=sys.stderr)
    sys.exit(2)
'''


def gui_loading(d: Path, timeout: float) -> list[dict]:
    """The GUI opens files through crysplugins.inputs.load_input; each file in its own child."""
    rows = []
    case = BAD.Case([])  # no expected words: any one sentence is a clean refusal
    for kind, name in GUI_FILES:
        try:
            proc = subprocess.run([sys.executable, "-c", GUI_LOADER, kind, str(d / name)], capture_output=True,
                                  text=True, timeout=timeout, cwd=str(d))
            verdict = BAD.judge(case, proc, d / "no_such_out")
        except subprocess.TimeoutExpired:
            verdict = "hang"
        rows.append({"input": f"open {name} as {kind}", "class": _classify(verdict), "verdict": verdict})
        print(f"  {rows[-1]['class']:9s} {rows[-1]['input']} {verdict}", flush=True)
    return rows


def plugins(timeout: float) -> list[dict]:
    """List with every fault plugin installed; predict and demo of each predict-time fault."""
    env = {**os.environ, **FAULTS.LIMITS, "OMP_NUM_THREADS": "1"}
    env.pop("CRYSPLUGINS_DISABLE_PLUGIN_AUTOLOAD", None)
    env.pop("CRYSPLUGINS_PLUGINS", None)
    cli = [sys.executable, "-m", "crysplugins.cli"]
    rows = []

    def run(argv, path, extra=None):
        try:
            return subprocess.run(cli + argv, capture_output=True, text=True, timeout=timeout,
                                  env={**env, "PYTHONPATH": path, **(extra or {})})
        except subprocess.TimeoutExpired:
            return None

    listing = run(["list", "--json"], FAULTS.ALL)
    for plugin, words in FAULTS.DISCOVERY_FAILURES.items():
        if listing is None:
            cls, verdict = "hang", "list did not answer"
        elif listing.returncode < 0:
            cls, verdict = "crash", f"list killed by signal {-listing.returncode}"
        elif "Traceback" in listing.stderr or listing.returncode != 0:
            cls, verdict = "traceback", listing.stderr[-300:]
        else:
            failures = {f["plugin"]: f["error"] for f in json.loads(listing.stdout)["failures"]}
            ok = words in failures.get(plugin, "")
            cls, verdict = ("clean", "") if ok else ("silent", f"not reported: {failures.get(plugin)}")
        rows.append({"input": f"list with {plugin}", "class": cls, "verdict": verdict})
    for predictor, (plugin, dist, words) in FAULTS.PREDICT_FAILURES.items():
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "out"
            proc = run(["predict", predictor, "--out", str(out), "--quiet"], FAULTS.NO_HANG)
            case = BAD.Case([], f"The plugin {plugin} ({dist})")
            verdict = "hang" if proc is None else BAD.judge(case, proc, out)
        rows.append({"input": f"predict {predictor}", "class": _classify(verdict), "verdict": verdict})
    with tempfile.TemporaryDirectory() as tmp:
        only = ",".join(["solvent_content", "fault_good", *(p for p, _, _ in FAULTS.PREDICT_FAILURES.values())])
        proc = run(["demo", "--out", str(Path(tmp) / "demo"), "--quiet"], FAULTS.NO_HANG,
                   {"CRYSPLUGINS_PLUGINS": only})
        summary_path = Path(tmp) / "demo" / "demo.json"
        summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
        for predictor in FAULTS.PREDICT_FAILURES:
            if proc is None:
                cls, verdict = "hang", "demo did not answer"
            elif proc.returncode < 0:
                cls, verdict = "crash", f"demo killed by signal {-proc.returncode}"
            elif "Traceback" in proc.stderr:
                cls, verdict = "traceback", proc.stderr[-300:]
            elif summary.get(predictor, {}).get("status") == "error" and summary.get("fault-good", {}).get("status") == "ok":
                cls, verdict = "clean", ""
            else:
                cls, verdict = "silent", f"demo.json: {summary.get(predictor)}"
            rows.append({"input": f"demo with {predictor}", "class": cls, "verdict": verdict})
    for row in rows:
        print(f"  {row['class']:9s} {row['input']} {row['verdict']}", flush=True)
    return rows


def fuzz(env: dict | None = None, python: tuple[str, ...] = (sys.executable,)) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        paths = FUZZ.make_corpus(Path(tmp))
        t0 = time.monotonic()
        outcomes = FUZZ.run_corpus(paths, python=python, env=env)
        seconds = time.monotonic() - t0
    counts = Counter(o.status for o in outcomes)
    return {"runs": len(outcomes), "results": counts["result"], "refused": counts["refused"],
            "tracebacks": counts["traceback"], "signals": counts["signal"], "hangs": counts["hang"],
            "seconds": round(seconds, 1),
            "bad": [{"file": Path(o.path).name, "status": o.status, "message": o.message[-300:]}
                    for o in outcomes if o.status not in ("result", "refused")]}


def tally(rows: list[dict]) -> dict:
    counts = Counter(r["class"] for r in rows)
    return {"tried": len(rows), **{c: counts[c] for c in CLASSES}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--timeout", type=float, default=180, help="seconds per command before it counts as a hang")
    ap.add_argument("--fuzz-only", action="store_true", help="only the fuzz corpus")
    ap.add_argument("--baseline", help="folder holding another checkout's crysplugins package (fuzz only)")
    args = ap.parse_args()
    t0 = time.monotonic()
    results: dict = {}
    if args.baseline:
        site = next(p for p in sys.path if p.endswith("site-packages"))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([args.baseline, site])}
        results["fuzz_baseline"] = fuzz(env=env, python=(sys.executable, "-S"))
        print(json.dumps({k: v for k, v in results["fuzz_baseline"].items() if k != "bad"}))
    results["fuzz"] = fuzz()
    print(json.dumps({k: v for k, v in results["fuzz"].items() if k != "bad"}))
    if not args.fuzz_only:
        with tempfile.TemporaryDirectory() as tmp:
            d = BAD.make_bad_dir(Path(tmp))
            try:
                print("commands:")
                results["commands"] = commands(d, args.timeout)
                print("file loading (GUI path):")
                results["file_loading"] = gui_loading(d, args.timeout)
            finally:
                BAD.release_bad_dir(d)
        print("plugins:")
        results["plugins"] = plugins(args.timeout)
        groups = ("commands", "file_loading", "plugins")
        results["counts"] = {g: tally(results[g]) for g in groups}
        results["counts"]["all"] = tally([r for g in groups for r in results[g]])
        print(json.dumps(results["counts"], indent=1))
    write_figure("hostile_inputs", results, seconds=time.monotonic() - t0)


if __name__ == "__main__":
    main()
