"""``crysplugins export RUN_DIR [--name NAME] [--models-dir DIR]``: a training run -> ONNX + model card.

One exporter for every task, driven by the task (:class:`crysplugins.training.onnx_export.ExportSpec`,
from the task module's ``export_spec``):

1. read ``RUN_DIR/checkpoint.pt`` (or a checkpoint file such as ``RUN_DIR/best.pt``; several files of a
   solvent-unet run export their ensemble) as weights only;
2. the task rebuilds its model and names its inputs, dynamic axes and parity inputs (a RecCrysFormer: grid
   shapes in multiples of the patch size, the FFT convolutions switched to direct circular ones);
3. export with torch's dynamo exporter and check ONNX against torch (max |delta| <= 1e-4, else nothing
   is written);
4. write ``<models-dir>/<name>.onnx`` and ``<name>.json``, the model card: the task's entries, test
   metrics (``RUN_DIR/evaluation.json`` from :mod:`crysplugins.evaluation.evaluate_dataset` when present,
   else the Trainer's last evaluation), versions and the ONNX sha256, plus entries that need the exported
   model (the solvent U-net's P_U).

A ``hand-chirality`` run (``RUN_DIR/hand_chirality.json``, a numpy model) is copied as it is: its card
holds its weights, and it needs no torch.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import gemmi
import numpy as np

from crysplugins import __version__
from crysplugins.crystal.io import atomic_path
from crysplugins.errors import CrysError
from crysplugins.runtime.hand import chirality_head
from crysplugins.runtime.models import CARD_FORMAT, sha256_file


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a training run to ONNX + model card",
                       description="Export RUN_DIR/checkpoint.pt to <models-dir>/<name>.onnx + <name>.json.")
    p.add_argument("run_dir", nargs="+", metavar="RUN_DIR",
                   help="run folder or checkpoint file (several solvent-unet checkpoints: their ensemble)")
    p.add_argument("--name", help="model name (default: the run folder's name)")
    p.add_argument("--models-dir", default="models", help="output folder (default ./models)")
    p.add_argument("--shapes", help="grid shapes for the parity check, e.g. 16x16x24,24x32x16,32x32x32")
    p.add_argument("--static", action="store_true", help="export with fixed shapes (the example's)")
    p.add_argument("--hand-model", help="name of the hand classifier (an exported hand-classifier run) that "
                   "the plugin runs on this model's predictions; for models trained with loss.hand_invariant")
    p.add_argument("--pipeline", action="append", default=[], metavar="KEY=VALUE",
                   help="how patterson-density runs this model, written into its card: "
                        + ", ".join(f"{k}=..." for k in PIPELINE_KEYS) + " (repeat the option)")
    p.set_defaults(func=run)


#: card keys that say how patterson-density runs a RecCrysFormer (runtime/reccrysformer.py) -> value type
PIPELINE_KEYS: dict[str, type] = {"default_cycles": int, "final_dm_cycles": int, "default_output": str,
                                  "recycled_model": str}


def parse_pipeline(items: list[str]) -> dict[str, Any]:
    """``["final_dm_cycles=200", ...]`` -> card entries, each key and value checked."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in PIPELINE_KEYS:
            raise CrysError(f"--pipeline {item}: write KEY=VALUE with KEY one of {', '.join(PIPELINE_KEYS)}.")
        try:
            out[key] = PIPELINE_KEYS[key](value)
        except ValueError:
            raise CrysError(f"--pipeline {item}: {key} takes a whole number.") from None
        if PIPELINE_KEYS[key] is int and out[key] < 0:
            raise CrysError(f"--pipeline {item}: {key} must be 0 or more.")
    if out.get("default_output", "refined") not in ("refined", "prediction"):
        raise CrysError("--pipeline default_output must be 'refined' or 'prediction'.")
    return out


def _parse_shapes(text: str | None) -> list[tuple[int, ...]] | None:
    if not text:
        return None
    try:
        shapes = [tuple(int(x) for x in s.split("x")) for s in text.split(",")]
    except ValueError:
        raise CrysError(f"--shapes {text}: write grid shapes as 16x16x24,24x32x16.") from None
    if any(len(s) != 3 or min(s) < 1 for s in shapes):
        raise CrysError(f"--shapes {text}: each shape needs three positive sizes, e.g. 16x16x24.")
    return shapes


def run(args: argparse.Namespace) -> int:
    sources = args.run_dir
    card = export_run(sources[0] if len(sources) == 1 else sources, name=args.name, models_dir=args.models_dir,
                      shapes=_parse_shapes(args.shapes), static=args.static, hand_model=args.hand_model,
                      pipeline=parse_pipeline(args.pipeline))
    if "onnx" not in card:  # a hand-chirality model: weights in the card
        print(json.dumps({"card": f"{card['name']}.json", "task": card.get("task"),
                          "test": (card.get("metrics") or {}).get("test")}, indent=2))
        return 0
    print(json.dumps({"onnx": card["onnx"], "card": f"{card['name']}.json", "sha256": card["sha256"],
                      "onnx_bytes": card.get("onnx_bytes"),
                      "onnx_parity_max_abs_diff": card["onnx_parity"]["max_abs_diff"]}, indent=2))
    return 0


def _versions() -> dict[str, str]:
    import onnx  # the 'train' extra, like torch: not needed for a hand-chirality export
    import onnxruntime
    import torch

    return {"crysplugins": __version__, "torch": torch.__version__, "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__, "python": platform.python_version()}


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _metrics(run_dir: Path) -> dict[str, Any]:
    ev = run_dir / "evaluation.json"
    if ev.exists():
        data = json.loads(ev.read_text())
        return {"source": "evaluation.json (crysplugins.evaluation.evaluate_dataset, full test split)",
                **{k: v for k, v in data.items() if k != "per_example"}}
    summ = run_dir / "summary.json"
    if summ.exists():
        data = json.loads(summ.read_text())
        return {"source": "Trainer's last evaluation (test subset)", **data.get("metrics", {})}
    return {}


# ------------------------------------------------------------------------------------------------ export

def export_run(run_dir: str | Path | list[str | Path], name: str | None = None, models_dir: str | Path = "models",
               shapes: list[tuple[int, int, int]] | None = None, static: bool = False,
               hand_model: str | None = None, pipeline: dict[str, Any] | None = None) -> dict[str, Any]:
    """Export a run (a folder or checkpoint file, or a list of checkpoints for an ensemble); returns the
    card, also written to ``models_dir/<name>.json``.

    ``hand_model``: the hand model the plugin applies to this model's predictions (card key
    ``hand_model``; see :mod:`crysplugins.runtime.hand`).  It must already be in ``models_dir``.
    ``pipeline``: card entries that say how patterson-density runs the model (:data:`PIPELINE_KEYS`).
    """
    sources = [Path(p) for p in (run_dir if isinstance(run_dir, (list, tuple)) else [run_dir])]
    folder = sources[0] if sources[0].is_dir() else sources[0].parent
    if len(sources) == 1 and (folder / "hand_chirality.json").is_file():
        if (folder / "checkpoint.pt").is_file():
            raise CrysError(f"{folder} holds both a network (checkpoint.pt) and a hand model (hand_chirality.json); "
                            "move one of them to a folder of its own.")
        if hand_model:
            raise CrysError("--hand-model applies to RecCrysFormer runs only.")
        return _export_hand_chirality(folder, name, Path(models_dir))
    # torch and the task registry only here: a hand-chirality export needs neither
    from crysplugins.training.checkpoint import load_checkpoint
    from crysplugins.training.onnx_export import ExportOptions
    from crysplugins.training.tasks import export_spec_function

    for src in sources:
        if src.is_dir() and not (src / "checkpoint.pt").is_file():
            raise CrysError(f"{src} has no checkpoint.pt; is it a training run folder?")
    checkpoints = [load_checkpoint(src) for src in sources]
    kind = checkpoints[0].task
    if any(c.task != kind for c in checkpoints):
        raise CrysError("The checkpoints to export come from different tasks.")
    models_dir = Path(models_dir)
    if hand_model and kind != "reccrysformer":
        raise CrysError(f"--hand-model applies to RecCrysFormer runs only; {folder} is a '{kind}' run.")
    if pipeline and kind != "reccrysformer":
        raise CrysError(f"--pipeline applies to RecCrysFormer runs only; {folder} is a '{kind}' run.")
    if hand_model and not (models_dir / f"{hand_model}.json").is_file():
        raise CrysError(f"The hand classifier {hand_model} is not in {models_dir}; export it there first.")
    if kind == "reccrysformer" and bool((checkpoints[0].config.get("loss") or {}).get("hand_invariant")) \
            and not hand_model:
        print(f"warning: {folder} was trained hand-invariant; without --hand-model its predictions keep "
              "whichever hand the network chose.", file=sys.stderr)
    options = ExportOptions(shapes=shapes, static=static, hand_model=hand_model, models_dir=models_dir)
    spec = export_spec_function(kind)(checkpoints, options)
    spec.card.update(pipeline or {})
    return write_export(spec, kind, name or folder.name, folder, models_dir)


def write_export(spec: Any, kind: str, name: str, run_dir: Path, models_dir: Path) -> dict[str, Any]:
    """Export ``spec`` to ONNX, check it, and write the ONNX file and the card (nothing on failure)."""
    from crysplugins.training.onnx_export import export_onnx, parity, session

    models_dir.mkdir(parents=True, exist_ok=True)
    tmpdir = Path(tempfile.mkdtemp(prefix=".export-", dir=str(models_dir)))
    try:
        tmp_onnx = tmpdir / f"{name}.onnx"
        export_onnx(spec, tmp_onnx)
        checks = parity(spec, tmp_onnx)
        card: dict[str, Any] = {"format": CARD_FORMAT, "name": name, "task": kind, "onnx": f"{name}.onnx",
                                "onnx_bytes": tmp_onnx.stat().st_size, "sha256": sha256_file(tmp_onnx)}
        card.update(spec.card)
        card.update({"metrics": _metrics(run_dir), "onnx_parity": checks, "versions": _versions(),
                     "created": _now()})
        if spec.after_export is not None:
            card.update(spec.after_export(session(tmp_onnx), card))
        os.replace(tmp_onnx, models_dir / f"{name}.onnx")
        with atomic_path(models_dir / f"{name}.json") as tmp:
            tmp.write_text(json.dumps(card, indent=2, default=str) + "\n")
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    return card


def _export_hand_chirality(run_dir: Path, name: str | None, models_dir: Path) -> dict[str, Any]:
    """Copy a hand-chirality run's card (weights included) to ``models_dir/<name>.json``."""
    try:
        card = json.loads((run_dir / "hand_chirality.json").read_text())
    except ValueError as exc:
        raise CrysError(f"{run_dir}/hand_chirality.json is not valid JSON ({exc}).") from None
    try:
        ok = card["task"] == "hand-chirality" and chirality_head(card) is not None
    except (KeyError, TypeError, ValueError, AttributeError, CrysError):
        ok = False
    if not ok:
        raise CrysError(f"{run_dir}/hand_chirality.json is not a complete hand-chirality model card.")
    card["name"] = name or run_dir.name
    card["versions"] = {"crysplugins": __version__, "numpy": np.__version__, "gemmi": gemmi.__version__,
                        "python": platform.python_version()}
    card["created"] = _now()
    models_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(models_dir / f"{card['name']}.json") as tmp:
        tmp.write_text(json.dumps(card, indent=1) + "\n")
    return card
