"""Evaluate an exported RecCrysFormer (ONNX) on a dataset split (paper 000 section 5).

    python -m crysplugins.evaluation.evaluate_dataset --model models/NAME.json --data DATASET \
        [--split test] [--limit N] [--out RUN_DIR] [--update-card]

For every example of the split (the maps stored in the dataset shards, i.e. exactly what training saw):

* Pearson correlation of predicted and true density over every voxel (eq. 7) and of their |FFT| (eq. 8);
* the same for the trivial *mean-map baseline*: the mean normalised training density of the same grid
  shape (CALIBRATION.md: always report it beside the model);
* when ``test_mtz/<id>_phases.mtz`` exists: the amplitude-weighted mean phase error (degrees) of the
  predicted density's phases against the true phases, overall and in 12 equal-count resolution shells
  (like CCP4 cphasematch), and per shell the fraction of examples below 60° (paper fig. 7).  The
  prediction is compared as placed: training fixes the origin (centre of mass at the cell centre).

Uses onnxruntime (the shipped artefact) and :mod:`crysplugins.crystal.metrics`; no torch.  Writes
``evaluation.json`` and ``evaluation.png`` to ``--out``; ``--update-card`` copies the summary into the
model card's "metrics" (the ONNX file and its sha256 are unchanged).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from crysplugins.crystal import io
from crysplugins.crystal.fourier import FourierGrid
from crysplugins.crystal.io import atomic_path
from crysplugins.crystal.maps import invert_grid
from crysplugins.crystal.metrics import (fft_amplitude_pearson, fraction_solved_by_shell, pearson, phase_error,
                                         phase_error_shells)
from crysplugins.datasets.store import open_dataset
from crysplugins.errors import CrysError
from crysplugins.interface import usable_reflections
from crysplugins.runtime.hand import choose_hand, hand_input
from crysplugins.runtime.models import ENV_MODELS, sha256_file
from crysplugins.runtime.runner import OnnxRunner


def _runner(card_path: Path) -> tuple[OnnxRunner, dict[str, Any]]:
    """The model of a card file (beside its ONNX file, sha256 checked) and the card."""
    card = json.loads(card_path.read_text())
    onnx_path = card_path.parent / card["onnx"]
    if card.get("sha256") and sha256_file(onnx_path) != card["sha256"]:
        raise CrysError(f"{onnx_path} does not match the sha256 in {card_path}.")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    return OnnxRunner(session, str(card.get("name", onnx_path.stem))), card


@contextlib.contextmanager
def _models_beside(card_path: Path):
    """Search the card's folder for models first (CRYSPLUGINS_MODELS), restoring the variable afterwards."""
    old = os.environ.get(ENV_MODELS)
    os.environ[ENV_MODELS] = os.pathsep.join([str(card_path.resolve().parent)] + ([old] if old else []))
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(ENV_MODELS, None)
        else:
            os.environ[ENV_MODELS] = old


def evaluate(card_path: str | Path, data: str | Path, split: str = "test", limit: int | None = None,
             batch: int = 16, progress: bool = True) -> dict[str, Any]:
    """Per-example figures and their summary (:func:`summarise`) of the model ``card_path`` on ``split``."""
    runner, card = _runner(Path(card_path))
    ds = open_dataset(data)
    # mean training density per grid shape (baseline)
    mean_maps: dict[tuple, np.ndarray] = {}
    for shard in ds.shards("train"):
        d = shard.load()["density"].astype(np.float64)
        acc = mean_maps.setdefault(shard.shape, [np.zeros(shard.shape), 0])
        acc[0] += d.sum(axis=0)
        acc[1] += len(d)
    mean_maps = {k: v[0] / v[1] for k, v in mean_maps.items()}
    rows = {r["id"]: r for r in ds.examples(split)}
    # a hand model that reads density-modified maps has nothing to read here (no refinement is run):
    # the network's predictions are then scored in the hand they come in
    with _models_beside(Path(card_path)):
        hand_card = {} if card.get("hand_model") and hand_input(card) == "refined" else card
    records: list[dict[str, Any]] = []
    t0 = time.monotonic()
    total = len(rows) if not limit else min(limit, len(rows))
    done = 0
    for shard in ds.shards(split):
        if limit and done >= limit:
            break
        arrays = shard.load()
        n = len(arrays["ids"])
        if limit:
            n = min(n, limit - done)
        for start in range(0, n, batch):
            sl = slice(start, min(n, start + batch))
            feeds = {"patterson": arrays["patterson"][sl].astype(np.float32)[:, None],
                     "sequence": arrays["sequence_index"][sl].astype(np.int64)}
            raw = runner.run(feeds)[:, 0]
            with _models_beside(Path(card_path)):  # the hand classifier is looked up beside the card first
                pred, inverted, logits = choose_hand(raw, hand_card, cells=arrays["cell"][sl],
                                                     sequences=ds.sequences(arrays["sequence_index"][sl]))
            for j, ex_id in enumerate(arrays["ids"][sl]):
                ex_id = str(ex_id)
                true = arrays["density"][sl][j].astype(np.float64)
                p = pred[j].astype(np.float64)
                rec: dict[str, Any] = {"id": ex_id, "shape": list(shard.shape),
                                       "pearson": pearson(p, true), "fft_pearson": fft_amplitude_pearson(p, true)}
                if hand_card.get("hand_model"):
                    rec["hand_inverted"] = bool(inverted[j])
                    rec["hand_logit"] = float(logits[j])
                    # diagnostics only (use the truth): the Pearson of the other hand and of the better one
                    other = pearson(invert_grid(p), true)
                    rec["pearson_other_hand"] = other
                    rec["hand_right"] = bool(rec["pearson"] >= other)
                base = mean_maps.get(tuple(shard.shape))
                if base is not None:
                    rec["baseline_pearson"] = pearson(base, true)
                ph = ds.root / "test_mtz" / f"{ex_id}_phases.mtz"
                if ph.exists():
                    rec.update(_phase_figures(ph, p, base, tuple(shard.shape)))
                records.append(rec)
            done += sl.stop - sl.start
            if progress:
                rate = done / max(1e-9, time.monotonic() - t0)
                sys.stderr.write(f"\revaluated {done}/{total} ({rate:.1f} ex/s)")
                sys.stderr.flush()
    if progress:
        sys.stderr.write("\n")
    if not records:
        raise CrysError(f"The {split} split of {data} is empty.")
    return summarise(records, card, str(data), split)


def _phase_figures(phases_mtz: Path, pred: np.ndarray, base: np.ndarray | None, shape: tuple) -> dict[str, Any]:
    """Amplitude-weighted phase error (degrees) of a prediction (and the baseline) against the true
    phases, overall and in 12 shells, compared as placed; {} when the grid does not fit the reflections."""
    refl = io.read_mtz(phases_mtz, need=("F", "PHI"))
    hkl = refl.miller_array().astype(np.int64)
    f, phi = refl.values("F"), refl.values("PHI")
    ok = usable_reflections(hkl, f, phi)
    hkl, f, phi = hkl[ok], f[ok], phi[ok]
    try:
        fg = FourierGrid(hkl, shape, float(refl.cell.volume))
    except ValueError:
        return {}
    phi_p = np.degrees(np.angle(fg.from_map(pred)[0]))
    out = {"phase_error": phase_error(None, phi, phi_p, f),
           "shells": phase_error_shells(hkl, refl.cell, phi, phi_p, f, 12)}
    if base is not None:
        out["baseline_phase_error"] = phase_error(None, phi, np.degrees(np.angle(fg.from_map(base)[0])), f)
    return out


def _hand_summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    """How the hand classifier did (only for models with one): accuracy against the truth, the fraction
    of maps it inverted, and the mean Pearson with the better and with the worse hand of each prediction
    (diagnostics that use the truth; the better hand is an upper bound)."""
    rows = [r for r in records if "hand_right" in r]
    if not rows:
        return {}
    return {"hand_accuracy": float(np.mean([r["hand_right"] for r in rows])),
            "hand_inverted_fraction": float(np.mean([r["hand_inverted"] for r in rows])),
            "mean_pearson_better_hand": float(np.mean([max(r["pearson"], r["pearson_other_hand"]) for r in rows])),
            "mean_pearson_worse_hand": float(np.mean([min(r["pearson"], r["pearson_other_hand"]) for r in rows]))}


def summarise(records: list[dict[str, Any]], card: dict, data: str, split: str) -> dict[str, Any]:
    def mean(key: str) -> float | None:
        vals = [r[key] for r in records if key in r and np.isfinite(r[key])]
        return float(np.mean(vals)) if vals else None

    def median(key: str) -> float | None:
        vals = [r[key] for r in records if key in r and np.isfinite(r[key])]
        return float(np.median(vals)) if vals else None

    with_phases = [r for r in records if "shells" in r]
    shells = fraction_solved_by_shell([r["shells"] for r in with_phases], 60.0) if with_phases else []
    return {
        "model": card.get("name"), "dataset": data, "split": split, "n_examples": len(records),
        "mean_pearson": mean("pearson"), "median_pearson": median("pearson"),
        "mean_fft_pearson": mean("fft_pearson"),
        "baseline_mean_pearson": mean("baseline_pearson"),
        "baseline_description": "mean normalised training density of the same grid shape",
        "n_with_phases": len(with_phases),
        "mean_phase_error": mean("phase_error"), "median_phase_error": median("phase_error"),
        "baseline_mean_phase_error": mean("baseline_phase_error"),
        **_hand_summary(records),
        "fraction_phase_error_below_60": (float(np.mean([r["phase_error"] < 60 for r in with_phases]))
                                          if with_phases else None),
        "shells": shells,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "per_example": records,
    }


def plot(result: dict[str, Any], path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    pcs = [r["pearson"] for r in result["per_example"]]
    base = [r["baseline_pearson"] for r in result["per_example"] if "baseline_pearson" in r]
    axes[0].hist(pcs, bins=40, alpha=0.7, label=f"model (mean {np.mean(pcs):.3f})")
    if base:
        axes[0].hist(base, bins=40, alpha=0.5, label=f"mean-map baseline (mean {np.mean(base):.3f})")
    axes[0].set_xlabel("Pearson correlation (eq. 7)")
    axes[0].set_ylabel("examples")
    axes[0].legend()
    shells = result.get("shells") or []
    if shells:
        x = np.arange(len(shells))
        axes[1].bar(x, [s["fraction_below"] for s in shells])
        axes[1].set_xticks(x, [f"{s['d_max']:.1f}-{s['d_min']:.1f}" for s in shells], rotation=60, fontsize=7)
        axes[1].set_ylim(0, 1)
        axes[1].set_xlabel("resolution shell (Å), low to high")
        axes[1].set_ylabel("fraction with phase error < 60°")
    fig.suptitle(f"{result['model']} on {Path(result['dataset']).name} {result['split']} "
                 f"({result['n_examples']} examples)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="model card JSON (next to its ONNX file)")
    ap.add_argument("--data", required=True, help="dataset folder")
    ap.add_argument("--split", default="test")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--out", default=".", help="folder for evaluation.json and evaluation.png")
    ap.add_argument("--update-card", action="store_true", help="write the summary into the model card")
    args = ap.parse_args(argv)
    try:
        result = evaluate(args.model, args.data, args.split, args.limit)
    except CrysError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "evaluation.json").write_text(json.dumps(result, indent=1, default=float))
    png = plot(result, out / "evaluation.png")
    summary = {k: v for k, v in result.items() if k not in ("per_example",)}
    if args.update_card:
        card_path = Path(args.model)
        card = json.loads(card_path.read_text())
        card["metrics"] = {"source": f"crysplugins.evaluation.evaluate_dataset ({args.split} split, ONNX)",
                           **{k: v for k, v in summary.items() if k != "shells"},
                           "shells_fraction_below_60": summary.get("shells")}
        with atomic_path(card_path) as tmp:
            tmp.write_text(json.dumps(card, indent=2, default=str) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k != "shells"}, indent=1, default=float))
    if png:
        print(f"plot: {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
