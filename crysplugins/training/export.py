"""``crysplugins export RUN_DIR [--name NAME] [--models-dir DIR]``: a training run -> ONNX + model card.

For a RecCrysFormer run:

1. rebuild the model from ``RUN_DIR/checkpoint.pt`` (architecture config + weights + residue boxes);
2. export it with torch's default (dynamo) ONNX exporter, with dynamic batch, grid shape (multiples of
   the patch size) and residue count, and the FFT convolutions switched to direct circular convolutions;
3. check ONNX against torch on at least three grid shapes (max |delta| <= 1e-4, else nothing is written);
4. write ``<models-dir>/<name>.onnx`` and ``<name>.json``, the model card: architecture, training data
   summary, normalisation constants, the grid (spacing, d_min, shapes) the model expects, test metrics
   (``RUN_DIR/evaluation.json`` from :mod:`crysplugins.training.evaluate_dataset` when present, else the
   Trainer's last evaluation), training time and throughput, versions and the ONNX sha256.

Other tasks (e.g. solvent-unet) are exported generically from ``task.build_model`` and
``task.export_example()`` with every spatial axis dynamic; a task may add card entries with
``task.card() -> dict``.
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

import numpy as np

from crysplugins.errors import CrysError

PARITY_TOL = 1e-4


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a training run to ONNX + model card",
                       description="Export RUN_DIR/checkpoint.pt to <models-dir>/<name>.onnx + <name>.json.")
    p.add_argument("run_dir")
    p.add_argument("--name", help="model name (default: the run folder's name)")
    p.add_argument("--models-dir", default="models", help="output folder (default ./models)")
    p.add_argument("--shapes", help="grid shapes for the parity check, e.g. 16x16x24,24x32x16,32x32x32")
    p.add_argument("--static", action="store_true", help="export with fixed shapes (the example's)")
    p.add_argument("--hand-model", help="name of the hand classifier (an exported hand-classifier run) that "
                   "the plugin runs on this model's predictions; for models trained with loss.hand_invariant")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    shapes = [tuple(int(x) for x in s.split("x")) for s in args.shapes.split(",")] if args.shapes else None
    card = export_run(args.run_dir, name=args.name, models_dir=args.models_dir, shapes=shapes,
                      static=args.static, hand_model=args.hand_model)
    if "onnx" not in card:  # a hand-chirality model: weights in the card
        print(json.dumps({"card": f"{card['name']}.json", "task": card.get("task"),
                          "test": (card.get("metrics") or {}).get("test")}, indent=2))
        return 0
    print(json.dumps({"onnx": card["onnx"], "card": f"{card['name']}.json", "sha256": card["sha256"],
                      "onnx_bytes": card.get("onnx_bytes"),
                      "onnx_parity_max_abs_diff": card["onnx_parity"]["max_abs_diff"]}, indent=2))
    return 0


# ---------------------------------------------------------------------------------------------- helpers

def load_checkpoint(run_dir: str | Path) -> dict[str, Any]:
    import torch

    path = Path(run_dir) / "checkpoint.pt"
    if not path.is_file():
        raise CrysError(f"{run_dir} has no checkpoint.pt; is it a training run folder?")
    return torch.load(path, map_location="cpu", weights_only=False)


def model_from_checkpoint(ckpt: dict[str, Any]):
    """The RecCrysFormer of a checkpoint, in eval mode with direct (exportable) convolutions."""
    from crysplugins.training.nets.conv import set_fft
    from crysplugins.training.nets.reccrysformer import RecCrysFormer

    cfg = ckpt.get("model_config")
    if cfg is None:
        raise CrysError("The checkpoint has no model_config; it was not written by the RecCrysFormer task.")
    model = RecCrysFormer(cfg)
    model.load_state_dict(ckpt["model"])
    model.eval()
    set_fft(model, False)
    return model


def onnx_export(model, example: tuple, path: Path, input_names: list[str], dynamic_shapes: Any | None) -> None:
    import torch

    kwargs: dict[str, Any] = {"dynamo": True, "input_names": input_names, "output_names": ["density"],
                              "external_data": False}  # one self-contained file (sha256 covers all)
    if dynamic_shapes is not None:
        kwargs["dynamic_shapes"] = dynamic_shapes
    with torch.no_grad():
        torch.onnx.export(model, example, str(path), **kwargs)


def parity(model, onnx_path: Path, shapes: list[tuple[int, int, int]], n_res: int, in_channels: int,
           seed: int = 0) -> list[dict[str, Any]]:
    """max |ONNX - torch| on random normalised inputs of each shape (batch 2 and 1)."""
    import onnxruntime as ort
    import torch

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    rng = np.random.default_rng(seed)
    out = []
    for shape in shapes:
        for batch in (2, 1):
            x = rng.uniform(-0.3, 1.0, size=(batch, in_channels, *shape)).astype(np.float32)
            s = rng.integers(0, 20, size=(batch, n_res)).astype(np.int64)
            with torch.no_grad():
                ref = model(torch.from_numpy(x), torch.from_numpy(s)).numpy()
            feeds = {"patterson": x, "sequence": s}
            got = sess.run(None, {k: feeds[k] for k in names})[0]
            out.append({"shape": list(shape), "batch": batch, "max_abs_diff": float(np.abs(got - ref).max()),
                        "output_std": float(ref.std())})
    return out


def _dataset_summary(dataset: str | None) -> dict[str, Any]:
    """Ranges of cells and grid shapes of the training split (for the card), when the dataset is here."""
    if not dataset or not (Path(dataset) / "meta.json").exists():
        return {}
    from crysplugins.datasets.store import open_dataset

    ds = open_dataset(dataset)
    train = ds.examples("train")
    test = ds.examples("test")
    if not train:
        return {}
    arr = lambda k: np.array([r[k] for r in train], dtype=float)  # noqa: E731
    shapes = sorted({(r["nu"], r["nv"], r["nw"]) for r in train})
    return {"train_examples": len(train), "test_examples": len(test),
            "cell_lengths": [float(min(arr("a").min(), arr("b").min(), arr("c").min())),
                             float(max(arr("a").max(), arr("b").max(), arr("c").max()))],
            "cell_angles": [float(min(arr("alpha").min(), arr("beta").min(), arr("gamma").min())),
                            float(max(arr("alpha").max(), arr("beta").max(), arr("gamma").max()))],
            "grid_shapes": [list(s) for s in shapes],
            "train_families": ds.meta.get("families", {}).get("train"),
            "test_families": ds.meta.get("families", {}).get("test")}


def _versions() -> dict[str, str]:
    import onnx
    import onnxruntime
    import torch

    from crysplugins import __version__

    return {"crysplugins": __version__, "torch": torch.__version__, "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__, "python": platform.python_version()}


def _metrics(run_dir: Path) -> dict[str, Any]:
    ev = run_dir / "evaluation.json"
    if ev.exists():
        data = json.loads(ev.read_text())
        return {"source": "evaluation.json (crysplugins.training.evaluate_dataset, full test split)",
                **{k: v for k, v in data.items() if k != "per_example"}}
    summ = run_dir / "summary.json"
    if summ.exists():
        data = json.loads(summ.read_text())
        return {"source": "Trainer's last evaluation (test subset)", **data.get("metrics", {})}
    return {}


# ------------------------------------------------------------------------------------------------ export

def export_run(run_dir: str | Path, name: str | None = None, models_dir: str | Path = "models",
               shapes: list[tuple[int, int, int]] | None = None, static: bool = False,
               hand_model: str | None = None) -> dict[str, Any]:
    """Export a run; returns the card (also written to ``models_dir/<name>.json``).

    ``hand_model``: the hand model the plugin applies to this model's predictions (card key
    ``hand_model``; see :mod:`crysplugins.runtime.hand`).  It must already be in ``models_dir``.
    A ``hand-chirality`` run (``RUN_DIR/hand_chirality.json``, no torch) is copied as it is: its card holds
    its weights.
    """
    if (Path(run_dir) / "hand_chirality.json").is_file():
        if (Path(run_dir) / "checkpoint.pt").is_file():
            raise CrysError(f"{run_dir} holds both a network (checkpoint.pt) and a hand model (hand_chirality.json); "
                            "move one of them to a folder of its own.")
        if hand_model:
            raise CrysError("--hand-model applies to RecCrysFormer runs only.")
        return _export_hand_chirality(Path(run_dir), name, Path(models_dir))
    import torch

    from crysplugins.runtime.models import CARD_FORMAT, sha256_file

    run_dir = Path(run_dir)
    ckpt = load_checkpoint(run_dir)
    task = ckpt.get("task") or ckpt.get("config", {}).get("task")
    name = name or run_dir.name
    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    if task != "reccrysformer":
        if hand_model:
            raise CrysError(f"--hand-model applies to RecCrysFormer runs only; {run_dir} is a '{task}' run.")
        return _export_generic(run_dir, ckpt, name, models_dir)
    if hand_model and not (models_dir / f"{hand_model}.json").is_file():
        raise CrysError(f"The hand classifier {hand_model} is not in {models_dir}; export it there first.")
    hand_invariant = bool((ckpt.get("config", {}).get("loss") or {}).get("hand_invariant"))
    if hand_invariant and not hand_model:
        print(f"warning: {run_dir} was trained hand-invariant; without --hand-model its predictions keep "
              "whichever hand the network chose.", file=sys.stderr)
    model = model_from_checkpoint(ckpt)
    mcfg = model.config
    p = mcfg["patch"]
    state = ckpt.get("task_state") or {}
    meta = state.get("meta") or {}
    summary = _dataset_summary(state.get("dataset"))
    n_res = int(meta.get("n_residues") or mcfg["max_residues"])
    trained = [tuple(s) for s in summary.get("grid_shapes", [])]
    if shapes is None:
        pool = trained or [(16, 16, 16), (16, 24, 32), (32, 32, 32)]
        shapes = sorted(pool, key=lambda s: np.prod(s))
        shapes = list(dict.fromkeys([shapes[0], shapes[len(shapes) // 2], shapes[-1]]))
        extra = [(16, 16, 16), (8, 16, 24), (24, 24, 24)]
        for s in extra:
            if len(shapes) >= 3:
                break
            if s not in shapes:
                shapes.append(s)
    for s in shapes:
        if any(n % p for n in s):
            raise CrysError(f"Grid shape {s} is not a multiple of the patch size {p}.")
    ex_shape = max(trained, key=lambda s: np.prod(s)) if trained else shapes[-1]
    x = torch.zeros(2, mcfg["in_channels"], *ex_shape)
    seq = torch.zeros(2, n_res, dtype=torch.long)
    example = (x, seq) if mcfg["partial"] else (x,)
    names = ["patterson", "sequence"] if mcfg["partial"] else ["patterson"]
    dyn = None
    if not static:
        from torch.export import Dim

        maxp = mcfg["max_patches_per_axis"]
        b = Dim("batch", min=1, max=1024)
        axes = {0: b, 2: p * Dim("p1", min=1, max=maxp), 3: p * Dim("p2", min=1, max=maxp),
                4: p * Dim("p3", min=1, max=maxp)}
        dyn = {"patterson": axes}
        if mcfg["partial"]:
            dyn["sequence"] = {0: b} if mcfg["max_residues"] == 1 else {
                0: b, 1: Dim("residues", min=1, max=mcfg["max_residues"])}
        if mcfg["partial"] and n_res == mcfg["max_residues"] and n_res > 1:
            pass
    tmpdir = Path(tempfile.mkdtemp(prefix=".export-", dir=str(models_dir)))
    try:
        tmp_onnx = tmpdir / f"{name}.onnx"
        onnx_export(model, example, tmp_onnx, names, dyn)
        check_shapes = [tuple(ex_shape)] if static else shapes
        par = parity(model, tmp_onnx, check_shapes, n_res, mcfg["in_channels"])
        worst = max(r["max_abs_diff"] for r in par)
        if worst > PARITY_TOL:
            raise CrysError(f"The ONNX export differs from torch by {worst:.2e} (> {PARITY_TOL}); nothing written.")
        size = tmp_onnx.stat().st_size
        spacing = None
        d_min = meta.get("d_min")
        rate = meta.get("sampling_rate")
        if isinstance(d_min, (int, float)) and isinstance(rate, (int, float)):
            spacing = float(d_min) / float(rate)
        build_cfg = (meta.get("build") or {}).get("config") or {}
        summ_path = run_dir / "summary.json"
        train_summary = json.loads(summ_path.read_text()) if summ_path.exists() else {}
        card = {
            "format": CARD_FORMAT, "name": name, "task": "reccrysformer", "predictor": "patterson-density",
            "description": "RecCrysFormer (paper 000): normalised Patterson map + sequence -> normalised "
                           "electron density, trained with crysplugins.",
            "onnx": f"{name}.onnx", "onnx_bytes": size, "sha256": sha256_file(tmp_onnx),
            "inputs": [{"name": "patterson", "shape": ["batch", mcfg["in_channels"], "nu", "nv", "nw"],
                        "dtype": "float32", "meaning": "Patterson map (channel 0) normalised per card"}]
            + ([{"name": "sequence", "shape": ["batch", "residues"], "dtype": "int64",
                 "meaning": "residue indices into residue_types"}] if mcfg["partial"] else []),
            "outputs": [{"name": "density", "shape": ["batch", 1, "nu", "nv", "nw"], "dtype": "float32",
                         "meaning": "normalised density in [-1, 1]; e/Å^3 = value * scale + offset"}],
            "architecture": mcfg,
            "parameters": int(sum(t.numel() for t in model.parameters())),
            "normalisation": meta.get("normalisation"),
            "residue_types": meta.get("residue_types", "ACDEFGHIKLMNPQRSTVWY"),
            "n_residues": n_res,
            "grid": {"d_min": d_min, "sampling_rate": rate, "spacing": spacing,
                     "multiple": int(build_cfg.get("grid_multiple", p)), "patch": p,
                     "max_grid": int(build_cfg.get("max_grid") or p * mcfg["max_patches_per_axis"]),
                     "trained_shapes": summary.get("grid_shapes")},
            "data": {"dataset": state.get("dataset"), "format": meta.get("format"),
                     "n_residues": meta.get("n_residues"), "fixed_cell": meta.get("fixed_cell"),
                     "splits": meta.get("splits"), "families": meta.get("families"),
                     "train_examples_used": state.get("train_examples_used"), **summary,
                     "build": {k: v for k, v in (meta.get("build") or {}).items() if k in ("config", "date", "seconds")}},
            "training": {"config": ckpt.get("config", {}).get("train"), "loss": ckpt.get("config", {}).get("loss"),
                         "steps": ckpt["state"]["step"], "epochs": ckpt["state"]["epoch"],
                         "examples_seen": ckpt["state"]["examples"],
                         "minutes": train_summary.get("minutes"),
                         "examples_per_second": train_summary.get("examples_per_second"),
                         "machine": platform.machine() + ", " + str(os.cpu_count()) + " CPU cores visible"},
            "metrics": _metrics(run_dir),
            "onnx_parity": {"tolerance": PARITY_TOL, "max_abs_diff": worst, "checks": par,
                            "dynamic_shapes": not static},
            "versions": _versions(),
            "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        }
        if hand_model:
            card["hand_model"] = hand_model
        ex = run_dir / "example.json"
        if ex.exists():
            card["example"] = json.loads(ex.read_text())
        if state.get("recycling"):  # a recycling run (issue #5): how its template channel was trained
            from crysplugins.training.recycling import card_recycling_entry

            card["recycling"] = card_recycling_entry(state["recycling"])
        os.replace(tmp_onnx, models_dir / f"{name}.onnx")
        from crysplugins.crystal.io import atomic_path

        with atomic_path(models_dir / f"{name}.json") as tmp:
            tmp.write_text(json.dumps(card, indent=2, default=str) + "\n")
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    return card


def _export_hand_chirality(run_dir: Path, name: str | None, models_dir: Path) -> dict[str, Any]:
    """Copy a hand-chirality run's card (weights included) to ``models_dir/<name>.json``."""
    from crysplugins.crystal.io import atomic_path

    from crysplugins.crystal.chirality import FEATURE_SET, n_features

    try:
        card = json.loads((run_dir / "hand_chirality.json").read_text())
    except ValueError as exc:
        raise CrysError(f"{run_dir}/hand_chirality.json is not valid JSON ({exc}).") from None
    try:
        ok = (card["task"] == "hand-chirality" and card["feature_set"] == FEATURE_SET
              and len(card["weights"]) == len(card["scale"]) == n_features(len(card["sigmas"]))
              and np.isfinite(np.asarray(card["weights"] + card["scale"], dtype=float)).all())
    except (KeyError, TypeError, ValueError):
        ok = False
    if not ok:
        raise CrysError(f"{run_dir}/hand_chirality.json is not a complete hand-chirality model card.")
    card["name"] = name or run_dir.name
    import gemmi

    from crysplugins import __version__

    card["versions"] = {"crysplugins": __version__, "numpy": np.__version__, "gemmi": gemmi.__version__,
                        "python": platform.python_version()}
    card["created"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    models_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(models_dir / f"{card['name']}.json") as tmp:
        tmp.write_text(json.dumps(card, indent=1) + "\n")
    return card


def _export_generic(run_dir: Path, ckpt: dict[str, Any], name: str, models_dir: Path) -> dict[str, Any]:
    """Export another task's model (every axis after the channel axis dynamic)."""
    import torch
    from torch.export import Dim

    from crysplugins.runtime.models import CARD_FORMAT, sha256_file
    from crysplugins.training.tasks import get_task_factory

    config = ckpt.get("config") or {}
    task = get_task_factory(ckpt.get("task") or config.get("task"))(config)
    model = task.build_model(config)
    model.load_state_dict(ckpt["model"])
    model.eval()
    example = task.export_example()
    if not isinstance(example, dict):
        raise CrysError("The task's export_example() must return a dict of named tensors.")
    names = list(example)
    dyn = {k: {i: Dim(f"{k}_{i}", min=1, max=4096) for i in range(v.dim()) if i != 1} for k, v in example.items()}
    tmpdir = Path(tempfile.mkdtemp(prefix=".export-", dir=str(models_dir)))
    try:
        tmp_onnx = tmpdir / f"{name}.onnx"
        with torch.no_grad():
            torch.onnx.export(model, tuple(example.values()), str(tmp_onnx), dynamo=True, input_names=names,
                              external_data=False,
                              dynamic_shapes=tuple(dyn.values()))
            import onnxruntime as ort

            sess = ort.InferenceSession(str(tmp_onnx), providers=["CPUExecutionProvider"])
            examples = [example] + list(getattr(task, "parity_examples", lambda: [])())
            worst = 0.0
            for ex in examples:  # the export example plus the task's other shapes, if it names any
                ref = model(*ex.values())
                got = sess.run(None, {k: v.numpy() for k, v in ex.items()})[0]
                worst = max(worst, float(np.abs(got - ref.numpy()).max()))
        if worst > PARITY_TOL:
            raise CrysError(f"The ONNX export differs from torch by {worst:.2e}; nothing written.")
        card = {"format": CARD_FORMAT, "name": name, "task": ckpt.get("task"), "onnx": f"{name}.onnx",
                "sha256": sha256_file(tmp_onnx), "config": config, "metrics": _metrics(run_dir),
                "onnx_parity": {"tolerance": PARITY_TOL, "max_abs_diff": worst, "inputs_checked": len(examples)},
                "versions": _versions(),
                "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
        card.update(getattr(task, "card", lambda: {})())
        os.replace(tmp_onnx, models_dir / f"{name}.onnx")
        (models_dir / f"{name}.json").write_text(json.dumps(card, indent=2, default=str) + "\n")
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    return card
