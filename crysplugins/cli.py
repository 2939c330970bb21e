"""The ``crysplugins`` command line.

Core commands (no torch, no Qt): ``list``, ``info NAME``, ``predict NAME ...``, ``demo``; they parse
arguments and print, and leave loading, running and writing to :mod:`crysplugins.request`.
Further commands live in their own modules and are imported only when used, so a missing optional
extra (torch for ``train``, PyQt6 for ``gui``) gives one clear sentence instead of an ImportError:
see ``LAZY_COMMANDS``.  Each such module defines ``add_parser(subparsers)`` that registers its parser
and sets ``func`` (a callable taking the parsed args and returning an exit code).

Every error a user can cause ends in one sentence on stderr and a non-zero exit.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from crysplugins import __version__
from crysplugins.errors import CrysError
from crysplugins.progress import ProgressBar
from crysplugins.runtime.models import shadow_notes
from crysplugins.examples import copy_examples
from crysplugins.validate import writable_folder
from crysplugins.host import Host, default_host
from crysplugins.interface import Kind
from crysplugins.inputs import columns_flag, input_flags, own_flag
from crysplugins.request import (json_text, load_request_inputs, prepare_output_folder, run_prediction,
                                 write_json, write_prediction)

#: command name -> (module, help, extra that provides its dependencies)
LAZY_COMMANDS: dict[str, tuple[str, str, str]] = {
    "dataset": ("crysplugins.datasets.cli", "build training datasets from PDB/mmCIF structures", ""),
    "train": ("crysplugins.training.cli", "train a model (needs the 'train' extra: torch)", "train"),
    "export": ("crysplugins.training.export", "export a training run to ONNX + model card", "train"),
    "evaluate": ("crysplugins.evaluation.cli", "evaluate predictors against true phases/maps", ""),
    "refine": ("crysplugins.refine_cli", "density-modify a map against observed amplitudes", ""),
    "density-modify": ("crysplugins.dm_command",
                       "density-modify experimental phases (PHIB/FOM or HL), any space group", ""),
    "gui": ("crysplugins.gui.app", "open the desktop app (needs the 'gui' extra: PyQt6)", "gui"),
    "coot-install": ("crysplugins.coot_install", "install the crysplugins menu into Coot", ""),
}


#: optional modules -> the extra that installs them (a command that needs one says so in one sentence)
OPTIONAL_MODULES = {"torch": "train", "onnx": "train", "PyQt6": "gui"}


# ------------------------------------------------------------------------------------------ helpers

def _print_json(obj: Any) -> None:
    sys.stdout.write(json_text(obj))
    sys.stdout.write("\n")


def _host() -> Host:
    return default_host()


# --------------------------------------------------------------------------------------------- list

def cmd_list(args: argparse.Namespace) -> int:
    host = _host()
    rows = [{
        "name": e.predictor.name, "version": e.predictor.version, "summary": e.predictor.summary,
        "plugin": e.plugin, "distribution": e.distribution, "status": "ok",
        "inputs": [{"name": s.name, "kind": s.kind.value, "required": s.required, "group": s.group,
                    "columns": list(s.columns), "help": s.help, **_flag_fields(e.predictor, s)}
                   for s in e.predictor.inputs],
        "outputs": [{"name": s.name, "kind": s.kind.value} for s in e.predictor.outputs],
    } for e in sorted(host.predictors.values(), key=lambda e: e.predictor.name)]
    failures = [{"plugin": f.plugin, "distribution": f.distribution, "status": "failed", "error": f.error}
                for f in host.failures]

    notes = shadow_notes()
    if args.json:
        _print_json({"predictors": rows, "failures": failures, "model_notes": notes})
        return 0
    if not rows:
        print("No predictors are installed.")
    for r in rows:
        print(f"{r['name']:28s} {r['version']:8s} {r['status']:6s} {r['distribution']}")
        print(f"    {r['summary']}")
    for f in failures:
        print(f"FAILED plugin {f['plugin']} ({f['distribution']}): {f['error']}")
    for note in notes:
        print(f"note: {note}")
    return 0


def _flag_fields(predictor, spec) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """The command-line flag of an input (and of its column choice) for ``list``/``info --json``."""
    flag = input_flags(predictor.inputs)[spec.name]
    fields = {"flag": f"--{flag}"}
    if spec.kind in (Kind.REFLECTIONS, Kind.MAP):
        fields["columns_flag"] = f"--{columns_flag(flag)}"
    return fields


# --------------------------------------------------------------------------------------------- info

def cmd_info(args: argparse.Namespace) -> int:
    """One screen about a predictor: its flags, outputs and the model card's main facts (all with --json)."""
    host = _host()
    predictor = host.get(args.name)
    entry = host.predictors[args.name]
    card_fn = getattr(predictor, "model_card", None)
    card = card_fn() if callable(card_fn) else None
    info = {
        "name": predictor.name, "version": predictor.version, "summary": predictor.summary,
        "plugin": entry.plugin, "distribution": entry.distribution,
        "origin_arbitrary": bool(getattr(predictor, "origin_arbitrary", False)),
        "inputs": [{"name": s.name, "kind": s.kind.value, "required": s.required, "group": s.group,
                    "unit": s.unit, "columns": list(s.columns), "choices": list(s.choices),
                    "default": s.default, "help": s.help, **_flag_fields(predictor, s)} for s in predictor.inputs],
        "outputs": [{"name": s.name, "kind": s.kind.value, "unit": s.unit, "help": s.help}
                    for s in predictor.outputs],
        "model_card": card,
        "model_notes": _model_notes(card),
    }
    if args.json:
        _print_json(info)
        return 0
    print(f"{info['name']} {info['version']} ({info['distribution']})")
    print(f"  {_clip(info['summary'], 110)}")
    print("inputs:")
    for s in info["inputs"]:
        req = "required" if s["required"] else (f"one of '{s['group']}'" if s["group"] else "optional")
        unit = f" [{s['unit']}]" if s["unit"] else ""
        default = f" (default {s['default']})" if s["default"] is not None else ""
        print(f"  {s['flag']:20s} {req:18s} {_clip(s['help'] + unit + default, 72)}")
    print("outputs:")
    for s in info["outputs"]:
        print(f"  {s['name']:26s} {s['kind']:11s} {_clip(s['help'], 73)}")
    if card:
        print("model:")
        for line in _card_lines(card):
            print(f"  {line}")
    for note in info["model_notes"]:
        print(f"note: {note}")
    print(f"(the whole model card and every input field: crysplugins info {info['name']} --json)")
    return 0


def _clip(text: str, width: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[:width - 1] + "…"


#: model-card entries shown by ``info`` (the rest is in ``info --json``)
CARD_FIELDS = ("name", "description", "summary", "task", "created", "reference", "parameters", "recycled_model",
               "hand_model", "default_cycles", "default_output")


def _card_lines(card: dict) -> list[str]:
    """A few lines of a model card: what the model is, its grid range and its headline test metrics."""
    lines = [f"{key}: {_clip(card[key], 90)}" for key in CARD_FIELDS if card.get(key) not in (None, "")]
    grid = card.get("grid") or {}
    if grid.get("d_min") is not None:
        lines.append(f"grid: d_min {grid.get('d_min')} Å, sampling rate {grid.get('sampling_rate')}")
    metrics = card.get("metrics") or {}
    shown = [(k, v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)][:6]
    if shown:
        lines.append("metrics: " + _clip(", ".join(f"{k} {v:.4g}" for k, v in shown), 100))
    return lines


def _model_notes(card: dict | None) -> list[str]:
    """The shadowing notes that concern this card's model (a user model hiding a shipped one)."""

    name = (card or {}).get("name")
    return [n for n in shadow_notes() if name and f"'{name}'" in n]


# ------------------------------------------------------------------------------------------ predict

def build_predict_parser(predictor) -> argparse.ArgumentParser:  # type: ignore[no-untyped-def]
    """An argparse parser with one flag per declared input of ``predictor``, in the shared vocabulary
    (:func:`crysplugins.inputs.input_flags`); an input's own name stays a hidden alias."""
    parser = argparse.ArgumentParser(prog=f"crysplugins predict {predictor.name}", description=predictor.summary)
    flags = input_flags(predictor.inputs)
    required = parser.add_argument_group("required inputs")
    groups: dict[str, Any] = {}
    optional = parser.add_argument_group("optional inputs")
    for spec in predictor.inputs:
        if spec.required:
            where = required
        elif spec.group:
            if spec.group not in groups:
                members = " or ".join(f"--{flags[s.name]}" for s in predictor.inputs if s.group == spec.group)
                groups[spec.group] = parser.add_argument_group(f"give {members} (at least one)")
            where = groups[spec.group]
        else:
            where = optional
        _add_input_flags(where, spec, flags[spec.name])
    parser.add_argument("--out", "-o", default=None, help="new (or empty) folder for the output files and "
                        "result.json (default: print only)")
    parser.add_argument("--overwrite", action="store_true", help="replace the files of an earlier run in --out")
    parser.add_argument("--json", action="store_true", help="print a machine-readable JSON result on stdout")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    return parser


def _add_input_flags(group, spec, flag: str) -> None:  # type: ignore[no-untyped-def]
    """The flag of one input (+ its column choice for an MTZ), and the input's own name as a hidden alias."""
    unit = f" [{spec.unit}]" if spec.unit else ""
    default = f" (default {spec.default})" if spec.default is not None else ""
    also_mtz = " (also an MTZ of map coefficients)" if spec.kind is Kind.MAP else ""
    old = own_flag(spec)
    target = group.add_mutually_exclusive_group(required=spec.required) if old != flag else group
    target.add_argument(f"--{flag}", dest=spec.name, metavar=spec.kind.value.upper(),
                        required=spec.required and old == flag, help=f"{spec.help}{also_mtz}{unit}{default}")
    if old != flag:  # a required input stays required under either spelling
        target.add_argument(f"--{old}", dest=spec.name, help=argparse.SUPPRESS)
    if spec.kind in (Kind.REFLECTIONS, Kind.MAP):
        if spec.kind is Kind.MAP:
            what = f"when --{flag} is an MTZ: its columns for roles F,PHI,FOM?"
        else:
            what = f"MTZ columns for roles {','.join(spec.columns)}" if spec.columns else "MTZ columns"
        group.add_argument(f"--{columns_flag(flag)}", dest=f"{spec.name}__columns", metavar="ROLE=LABEL,...",
                           help=f"{what} (default: picked automatically)")
        if old != flag:
            group.add_argument(f"--{columns_flag(old)}", dest=f"{spec.name}__columns", help=argparse.SUPPRESS)


def cmd_predict(argv: Sequence[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: crysplugins predict NAME [inputs...] [--out DIR] [--json]\n"
              "       crysplugins predict NAME --help   lists the inputs of NAME")
        return 0 if argv else 2
    host = _host()
    predictor = host.get(argv[0])
    parser = build_predict_parser(predictor)
    args = parser.parse_args(list(argv[1:]))
    if args.out:
        prepare_output_folder(args.out, args.overwrite)  # before the work, not after it
    values = {k: v for k, v in vars(args).items() if k not in ("out", "json", "quiet", "overwrite")}
    columns = {k[:-len("__columns")]: v for k, v in values.items() if k.endswith("__columns")}
    inputs = load_request_inputs(predictor, values, columns)
    notes = [n for v in inputs.values() for n in getattr(v, "notes", [])]
    bar = ProgressBar(predictor.name, enabled=not args.quiet and not args.json)
    t0 = time.monotonic()
    try:
        prediction = run_prediction(predictor, inputs, progress=bar)
    finally:
        bar.close()
    elapsed = time.monotonic() - t0
    files = write_prediction(prediction, Path(args.out)) if args.out else {}
    result = prediction.summary() | {"predictor": predictor.name, "version": predictor.version,
                                     "files": files, "seconds": round(elapsed, 3), "input_notes": notes}
    if args.out:
        write_json(Path(args.out) / "result.json", result)
    if args.json:
        _print_json(result)
    else:
        _print_human(result)
    return 0


def _print_human(result: dict) -> None:
    for note in result.get("input_notes", []):
        print(f"note: {note}")
    for msg in result.get("messages", []):
        print(msg)
    for name, s in result["scalars"].items():
        print(f"{name}: {s['value']:.4g} {s['unit']}".rstrip())
    for name, t in result["tables"].items():
        print(f"{name}:")
        print("  " + "\t".join(t["columns"]))
        for row in t["rows"]:
            print("  " + "\t".join(f"{v:.4g}" if isinstance(v, float) else "-" if v is None else str(v) for v in row))
    for name, m in result["maps"].items():
        print(f"map {name}: grid {m['grid']} cell {m['cell']} {m['spacegroup']}")
    for name, path in result["files"].items():
        print(f"wrote {name}: {path}")
    print(f"done in {result['seconds']:.2f} s")


# --------------------------------------------------------------------------------------------- demo

def cmd_demo(args: argparse.Namespace) -> int:
    """Run every installed predictor that ships example inputs; write results under --out."""
    host = _host()
    out = writable_folder(prepare_output_folder(args.out, args.overwrite))
    summary = {}
    for name in host.names():
        predictor = host.get(name)
        example = getattr(predictor, "example_inputs", None)
        if not callable(example):
            summary[name] = {"status": "no example inputs"}
            print(f"{name}: no example inputs, skipped")
            continue
        bar = ProgressBar(name, enabled=not args.quiet)
        t0 = time.monotonic()
        try:
            prediction = run_prediction(predictor, example(), progress=bar)
        except Exception as exc:  # one predictor's failure is recorded; the demo goes on with the others
            bar.close()
            error = str(exc) if isinstance(exc, CrysError) else f"{name} failed: {type(exc).__name__}: {exc}"
            summary[name] = {"status": "error", "error": error}
            print(f"{name}: error: {error}")
            continue
        bar.close()
        files = write_prediction(prediction, out / name)
        summary[name] = {"status": "ok", "seconds": round(time.monotonic() - t0, 3), "files": files,
                         **prediction.summary()}
        print(f"{name}: ok in {summary[name]['seconds']:.2f} s -> {out / name}")
        for message in prediction.messages:  # the hand call and what to check are said here, not only in demo.json
            print(f"    {message}")
        for sname, s in prediction.scalars.items():
            print(f"    {sname}: {s.value:.4g} {s.unit}".rstrip())
    write_json(out / "demo.json", summary)
    failed = [n for n, s in summary.items() if s["status"] == "error"]
    ran = [n for n, s in summary.items() if s["status"] == "ok"]
    skipped = len(summary) - len(ran) - len(failed)
    print(f"demo: {len(ran)} of {len(summary)} predictors ran, {len(failed)} failed, {skipped} had no example "
          f"inputs; results in {out}")
    return 1 if failed else 0


def cmd_examples(args: argparse.Namespace) -> int:
    """Copy the shipped example inputs into --out, so the README's command lines run as written."""
    files = copy_examples(args.out, args.overwrite)
    for name, what in files.items():
        print(f"{Path(args.out) / name}: {what}")
    return 0


# --------------------------------------------------------------------------------------------- main

def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The top-level parser; the lazy module of ``command`` (if any) is imported and adds its own."""
    parser = argparse.ArgumentParser(prog="crysplugins", description="Deep-learning crystallographic predictors behind one plugin host.")
    parser.add_argument("--version", action="version", version=f"crysplugins {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser("list", help="list installed predictors and plugin failures")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_list)
    p = sub.add_parser("info", help="inputs, outputs and model card of a predictor")
    p.add_argument("name")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_info)
    sub.add_parser("predict", help="run a predictor: crysplugins predict NAME --help", add_help=False)
    p = sub.add_parser("demo", help="run every predictor on the example data shipped in the package")
    p.add_argument("--out", default="crysplugins-demo", help="new (or empty) output folder (default "
                   "./crysplugins-demo)")
    p.add_argument("--overwrite", action="store_true", help="replace the files of an earlier demo in --out")
    p.add_argument("--quiet", "-q", action="store_true")
    p.set_defaults(func=cmd_demo)
    p = sub.add_parser("examples", help="copy the example input files (MTZ, sequences) into a folder")
    p.add_argument("--out", required=True, help="folder for the example files")
    p.add_argument("--overwrite", action="store_true", help="replace example files already in --out")
    p.set_defaults(func=cmd_examples)
    for name, (module, help_text, extra) in LAZY_COMMANDS.items():
        if name == command:
            try:
                mod = importlib.import_module(module)
            except ModuleNotFoundError as exc:
                missing = exc.name or "a module"
                if missing.startswith("crysplugins"):
                    raise CrysError(f"'crysplugins {name}' is not available in this installation.") from None
                hint = f" (install it with: pip install 'crysplugins[{extra}]')" if extra else ""
                raise CrysError(f"'crysplugins {name}' needs {missing}, which is not installed{hint}.") from None
            mod.add_parser(sub)
        else:
            sub.add_parser(name, help=help_text)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] == "predict":
            code = cmd_predict(argv[1:])
        else:
            parser = build_parser(argv[0] if argv else None)
            args = parser.parse_args(argv)
            if not getattr(args, "func", None):
                parser.print_help()
                return 0 if not argv else 2
            code = int(args.func(args) or 0)
        sys.stdout.flush()  # a reader that left shows here, inside the handlers below
        return code
    except CrysError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted.", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `crysplugins list --json | head`: the reader left; stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in OPTIONAL_MODULES:
            return _unexpected(exc)
        extra = OPTIONAL_MODULES[exc.name.split(".")[0]]
        print(f"error: this needs {exc.name}, which is not installed (install it with: "
              f"pip install 'crysplugins[{extra}]').", file=sys.stderr)
        return 2
    except Exception as exc:
        return _unexpected(exc)


#: exit status of an unexpected failure (a bug): EX_SOFTWARE of sysexits.h
EXIT_BUG = 70


def _unexpected(exc: Exception) -> int:
    """A bug is still one sentence on stderr; CRYSPLUGINS_DEBUG=1 shows the traceback instead."""
    if os.environ.get("CRYSPLUGINS_DEBUG", "").strip() not in ("", "0"):
        raise exc
    first = (str(exc).strip().splitlines() or [""])[0][:200]
    print(f"error: crysplugins failed unexpectedly ({type(exc).__name__}: {first}); this is a bug, "
          f"rerun with CRYSPLUGINS_DEBUG=1 to see where.", file=sys.stderr)
    return EXIT_BUG


if __name__ == "__main__":
    sys.exit(main())
