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
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from crysplugins import __version__
from crysplugins.errors import CrysError
from crysplugins.validate import check_output_folder, writable_folder
from crysplugins.host import Host, default_host
from crysplugins.interface import Kind
from crysplugins.request import load_request_inputs, run_prediction, write_json, write_prediction

#: command name -> (module, help, extra that provides its dependencies)
LAZY_COMMANDS: dict[str, tuple[str, str, str]] = {
    "dataset": ("crysplugins.datasets.cli", "build training datasets from PDB/mmCIF structures", ""),
    "train": ("crysplugins.training.cli", "train a model (needs the 'train' extra: torch)", "train"),
    "export": ("crysplugins.training.export", "export a training run to ONNX + model card", "train"),
    "evaluate": ("crysplugins.evaluation.cli", "evaluate predictors against true phases/maps", ""),
    "refine": ("crysplugins.refine_cli", "density-modify a map against observed amplitudes", ""),
    "gui": ("crysplugins.gui.app", "open the desktop app (needs the 'gui' extra: PyQt6)", "gui"),
    "coot-install": ("crysplugins.coot_install", "install the crysplugins menu into Coot", ""),
}


#: optional modules -> the extra that installs them (a command that needs one says so in one sentence)
OPTIONAL_MODULES = {"torch": "train", "onnx": "train", "PyQt6": "gui"}


# ------------------------------------------------------------------------------------------ helpers

class ProgressBar:
    """A one-line text progress bar on stderr (only when stderr is a terminal and not quiet)."""

    def __init__(self, label: str, enabled: bool = True, width: int = 30) -> None:
        self.label, self.width = label, width
        self.enabled = enabled and sys.stderr.isatty()
        self.start = time.monotonic()
        self._last = -1.0

    def __call__(self, fraction: float, message: str = "") -> None:
        if not self.enabled or (fraction - self._last < 0.01 and fraction < 1.0):
            return
        self._last = fraction
        filled = int(round(self.width * fraction))
        elapsed = time.monotonic() - self.start
        line = f"\r{self.label} [{'#' * filled}{'.' * (self.width - filled)}] {fraction:4.0%} {elapsed:5.1f}s {message[:40]:40s}"
        sys.stderr.write(line)
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled and self._last >= 0:
            sys.stderr.write("\n")
            sys.stderr.flush()


def _print_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=2, default=str)
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
                    "columns": list(s.columns), "help": s.help} for s in e.predictor.inputs],
        "outputs": [{"name": s.name, "kind": s.kind.value} for s in e.predictor.outputs],
    } for e in sorted(host.predictors.values(), key=lambda e: e.predictor.name)]
    failures = [{"plugin": f.plugin, "distribution": f.distribution, "status": "failed", "error": f.error}
                for f in host.failures]
    from crysplugins.runtime.models import shadow_notes

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


# --------------------------------------------------------------------------------------------- info

def cmd_info(args: argparse.Namespace) -> int:
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
                    "default": s.default, "help": s.help} for s in predictor.inputs],
        "outputs": [{"name": s.name, "kind": s.kind.value, "unit": s.unit, "help": s.help}
                    for s in predictor.outputs],
        "model_card": card,
        "model_notes": _model_notes(card),
    }
    if args.json:
        _print_json(info)
        return 0
    print(f"{info['name']} {info['version']} ({info['distribution']})")
    print(f"  {info['summary']}")
    print("inputs:")
    for s in info["inputs"]:
        req = "required" if s["required"] else (f"one of group '{s['group']}'" if s["group"] else "optional")
        extra = f" columns {','.join(s['columns'])}" if s["columns"] else ""
        extra += f" [{s['unit']}]" if s["unit"] else ""
        print(f"  --{s['name'].replace('_', '-'):18s} {s['kind']:12s} {req}{extra}: {s['help']}")
    print("outputs:")
    for s in info["outputs"]:
        print(f"  {s['name']:20s} {s['kind']:12s} {s['help']}")
    if card:
        print("model card:")
        print(json.dumps(card, indent=2, default=str))
    for note in info["model_notes"]:
        print(f"note: {note}")
    return 0


def _model_notes(card: dict | None) -> list[str]:
    """The shadowing notes that concern this card's model (a user model hiding a shipped one)."""
    from crysplugins.runtime.models import shadow_notes

    name = (card or {}).get("name")
    return [n for n in shadow_notes() if name and f"'{name}'" in n]


# ------------------------------------------------------------------------------------------ predict

def build_predict_parser(predictor) -> argparse.ArgumentParser:
    """An argparse parser with one flag per declared input of ``predictor``."""
    parser = argparse.ArgumentParser(prog=f"crysplugins predict {predictor.name}", description=predictor.summary)
    for spec in predictor.inputs:
        flag = "--" + spec.name.replace("_", "-")
        unit = f" [{spec.unit}]" if spec.unit else ""
        default = f" (default {spec.default})" if spec.default is not None else ""
        parser.add_argument(flag, dest=spec.name, metavar=spec.kind.value.upper(),
                            help=f"{spec.help}{unit}{default}")
        if spec.kind is Kind.REFLECTIONS:
            parser.add_argument(f"--{spec.name.replace('_', '-')}-columns", dest=f"{spec.name}__columns",
                                metavar="ROLE=LABEL,...",
                                help=f"MTZ columns for roles {','.join(spec.columns)} (default: picked automatically)")
    parser.add_argument("--out", "-o", default=None, help="folder for the output files (default: print only)")
    parser.add_argument("--json", action="store_true", help="print a machine-readable JSON result on stdout")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    return parser


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
        check_output_folder(args.out)  # before the work, not after it
    values = {k: v for k, v in vars(args).items() if k not in ("out", "json", "quiet")}
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
    out = writable_folder(args.out)
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
        for sname, s in prediction.scalars.items():
            print(f"    {sname}: {s.value:.4g} {s.unit}".rstrip())
    write_json(out / "demo.json", summary)
    failed = [n for n, s in summary.items() if s["status"] == "error"]
    ran = [n for n, s in summary.items() if s["status"] == "ok"]
    skipped = len(summary) - len(ran) - len(failed)
    print(f"demo: {len(ran)} of {len(summary)} predictors ran, {len(failed)} failed, {skipped} had no example "
          f"inputs; results in {out}")
    return 1 if failed else 0


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
    p.add_argument("--out", default="crysplugins-demo", help="output folder (default ./crysplugins-demo)")
    p.add_argument("--quiet", "-q", action="store_true")
    p.set_defaults(func=cmd_demo)
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
