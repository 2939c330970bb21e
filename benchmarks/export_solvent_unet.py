"""Export a trained solvent U-net to models/<name>.onnx + <name>.json (the model card, with P_U).

P_U (Skubák 2024, section 2.3) is calibrated on training-family crystals (data_build/solvent/
train_sources.npz, built from ../shared/corpus by benchmarks/build_solvent_sources.py).

    OMP_NUM_THREADS=1 python benchmarks/export_solvent_unet.py runs/solvent-unet/best.pt --name solvent-unet

Given several checkpoints it exports their ensemble (training/nets/unet3d.py ``UNet3DEnsemble``: mean class
probabilities) as one ONNX graph; the card lists every member's training.
"""
from __future__ import annotations

import argparse
import csv
import datetime
import json
from pathlib import Path

import numpy as np

from crysplugins.datasets.solvent_windows import TEST_FAMILIES, load_sources
from crysplugins.training.nets.unet3d import UNet3DEnsemble, count_parameters
from crysplugins.training.solvent_task import INPUT_CARD, calibrate_pu, export_onnx, load_checkpoint, sha256


def training_entry(checkpoint: str, info: dict) -> dict:
    """The card's training record of one checkpoint (its run folder's metrics.csv gives the last row)."""
    metrics_path = Path(checkpoint).parent / "metrics.csv"
    metrics = list(csv.DictReader(open(metrics_path))) if metrics_path.exists() else []
    return {
        "data": "simulated SAD-like phasing maps of corpus crystals (real cells + single chains packed in "
                "P212121/P21/C2), true masks by gemmi SolventMasker (vdW radii, islands < 50 Å³ removed)",
        "test_families_excluded": list(TEST_FAMILIES),
        "phase_error_range_deg": info["config"].get("phase_error_range"),
        "init": info["config"].get("init"),
        "steps": info["state"].get("step"), "minutes": round(info["state"].get("elapsed", 0) / 60, 1),
        "best_val_accuracy": info["state"].get("best"),
        "val_phase_error_deg": info["config"].get("val_phase_error"),
        "loss": "cross-entropy", "optimizer": "Adam",
        "last_metrics": metrics[-1] if metrics else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint", nargs="+", help="one checkpoint, or several for an ensemble")
    ap.add_argument("--name", default="solvent-unet")
    ap.add_argument("--out", default="models")
    ap.add_argument("--sources", default="data_build/solvent/train_sources.npz")
    ap.add_argument("--n-calibration", type=int, default=60)
    args = ap.parse_args()
    loaded = [load_checkpoint(c) for c in args.checkpoint]
    model = loaded[0][0] if len(loaded) == 1 else UNet3DEnsemble([m for m, _ in loaded])
    out = Path(args.out)
    onnx_path = out / f"{args.name}.onnx"
    export_onnx(model, onnx_path)
    trainings = [training_entry(c, info) for c, (_, info) in zip(args.checkpoint, loaded)]
    architecture = ({"type": "UNet3D", **model.config} if len(loaded) == 1 else
                    {"type": "UNet3DEnsemble", "members": [{"type": "UNet3D", **m.config} for m, _ in loaded]})
    card = {
        "format": "crysplugins-model-card-v1",
        "name": args.name,
        "version": "1.0.0",
        "task": "solvent-unet",
        "summary": "3D U-net (Skubák 2024, section 2.2) segmenting phasing maps into protein (0) and solvent (1).",
        "onnx": onnx_path.name,
        "sha256": sha256(onnx_path),
        "architecture": {**architecture, "parameters": count_parameters(model)},
        "input": INPUT_CARD,
        "output": {"name": "logits", "classes": ["protein", "solvent"]},
        "tiling": {"overlap": 16, "batch": 2},
        "training": trainings[0] if len(trainings) == 1 else {"members": trainings},
        "created": datetime.date.today().isoformat(),
        "reference": "P. Skubák, Acta Cryst. D (2024), deep-learning map segmentation",
    }
    # P_U needs the model running: calibrate through the exported ONNX (as the plugin will run it)
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    sources = load_sources(Path(args.sources))
    rng = np.random.default_rng(0)
    pick = [sources[i] for i in rng.permutation(len(sources))[: args.n_calibration]]
    pu, cutoffs = calibrate_pu(sess, card, pick)
    card["p_u"] = {**pu, "n_crystals": len(cutoffs), "phase_errors_deg": [50, 65, 80],
                   "description": "histogram of logit cut-offs reproducing the true solvent content (section 2.3)"}
    card["combination"] = {"high_threshold": 0.25, "low_threshold": 0.005}
    (out / f"{args.name}.json").write_text(json.dumps(card, indent=1))
    print(json.dumps({k: card[k] for k in ("architecture", "p_u")}, indent=1))


if __name__ == "__main__":
    main()
