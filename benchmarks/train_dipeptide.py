"""Train, export, evaluate and ship the dipeptide RecCrysFormer (issue #4, "the shipped model").

Reads the dataset built from ``../shared/corpus`` (``/work/shared/corpus``, via ``crysplugins dataset``
into ``data_build/dipeptide``), so it needs that folder; the product and its tests do not.

Stages (each can be run alone; ``all`` runs them in order):

    train     crysplugins train reccrysformer --config reccrysformer_dipeptide --max-minutes M (resumable)
    export    crysplugins export RUN_DIR --name reccrysformer_dipeptide --models-dir models
    evaluate  python -m crysplugins.evaluation.evaluate_dataset on the whole test split (ONNX), card updated
    example   pick a held-out test example, copy its MTZs + sequence to crysplugins/data/examples/
              patterson_density/, run the plugin on it and record its Pearson in the card

    OMP_NUM_THREADS=2 nohup .venv/bin/python benchmarks/train_dipeptide.py all --minutes 95 \
        --run runs/dipeptide_v1 > runs/dipeptide_v1/driver.log 2>&1 &
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
NAME = "reccrysformer_dipeptide"
PY = sys.executable


def sh(cmd: list[str]) -> None:
    print(time.strftime("%H:%M:%S"), "$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=REPO)


def train(args) -> None:
    cmd = [PY, "-m", "crysplugins.cli", "train", "reccrysformer", "--config", args.config,
           "--data", args.data, "--out", args.run, "--max-minutes", str(args.minutes)]
    if (REPO / args.run / "checkpoint.pt").exists():
        cmd.append("--resume")
    if args.epochs:
        cmd += ["--epochs", str(args.epochs)]
    sh(cmd)


def export(args) -> None:
    sh([PY, "-m", "crysplugins.cli", "export", args.run, "--name", NAME, "--models-dir", args.models])


def evaluate(args) -> None:
    sh([PY, "-m", "crysplugins.evaluation.evaluate_dataset", "--model", f"{args.models}/{NAME}.json",
        "--data", args.data, "--out", args.run, "--update-card"])


def example(args) -> None:
    """Copy a held-out test example (Pearson near the test median) and record the plugin's result."""
    from crysplugins.crystal import io
    from crysplugins.crystal.fourier import FourierGrid
    from crysplugins.crystal.metrics import pearson, phase_error
    from crysplugins.interface import Request, Sequence
    from crysplugins.plugins.patterson_density import PattersonDensityPredictor
    from crysplugins.runtime import models

    ev = json.loads((REPO / args.run / "evaluation.json").read_text())
    recs = [r for r in ev["per_example"] if "phase_error" in r]
    med = float(np.median([r["pearson"] for r in recs]))
    rec = min(recs, key=lambda r: abs(r["pearson"] - med))
    ex_id = rec["id"]
    from crysplugins.datasets.store import open_dataset

    ds = open_dataset(REPO / args.data)
    row = next(r for r in ds.index if r["id"] == ex_id)
    amp, ph = ds.test_mtz(ex_id)
    dest = REPO / "crysplugins" / "data" / "examples" / "patterson_density"
    if dest.exists():  # replace the previous example completely
        shutil.rmtree(dest)
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(amp, dest / amp.name)
    shutil.copy(ph, dest / ph.name)
    (dest / f"{ex_id}.seq").write_text(f">{ex_id}\n{row['sequence']}\n")
    models.clear_cache()
    import os

    os.environ["CRYSPLUGINS_MODELS"] = str(REPO / args.models)
    refl = io.read_mtz(dest / amp.name, need=("F",), want=("SIGF",))
    pred = PattersonDensityPredictor().predict(Request({"reflections": refl, "sequence": Sequence(row["sequence"]),
                                                        "model": NAME}))
    truth = io.read_mtz(dest / ph.name, need=("F", "PHI"))
    hkl = truth.miller_array()
    f, phi = truth.values("F"), truth.values("PHI")
    dmap = pred.maps["density"]
    fg = FourierGrid(hkl, dmap.shape, float(truth.cell.volume))
    true_map = fg.to_map(f * np.exp(1j * np.radians(phi)))
    p = pearson(true_map, dmap.array)
    fp, _ = fg.from_map(np.asarray(dmap.array, dtype=np.float64))
    pe = phase_error(None, phi, np.degrees(np.angle(fp)), f)
    info = {"id": ex_id, "sequence": row["sequence"], "family": row["family"], "split": row["split"],
            "amplitudes": amp.name, "phases": ph.name, "sequence_file": f"{ex_id}.seq",
            "cell": [row[k] for k in ("a", "b", "c", "alpha", "beta", "gamma")],
            "grid": list(dmap.shape),
            "pearson": p, "phase_error": pe, "dataset_pearson": rec["pearson"],
            "how": "crysplugins predict patterson-density on the amplitudes MTZ; Pearson (eq. 7) of the "
                   "predicted map with the true-phase map computed from the phases MTZ on the same grid",
            "source": "held-out test family of the dipeptide dataset built from ../shared/corpus"}
    (dest / "example.json").write_text(json.dumps(info, indent=2) + "\n")
    card_path = REPO / args.models / f"{NAME}.json"
    card = json.loads(card_path.read_text())
    card["example"] = info
    card_path.write_text(json.dumps(card, indent=2, default=str) + "\n")
    print(json.dumps(info, indent=1))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("stage", choices=["train", "export", "evaluate", "example", "all", "finish"])
    ap.add_argument("--run", default="runs/dipeptide_v1")
    ap.add_argument("--data", default="data_build/dipeptide")
    ap.add_argument("--config", default="reccrysformer_dipeptide")
    ap.add_argument("--models", default="models")
    ap.add_argument("--minutes", type=float, default=90)
    ap.add_argument("--epochs", type=int, default=None)
    args = ap.parse_args()
    stages = {"train": [train], "export": [export], "evaluate": [evaluate], "example": [example],
              "finish": [export, evaluate, example], "all": [train, export, evaluate, example]}[args.stage]
    for fn in stages:
        t0 = time.time()
        fn(args)
        print(f"{fn.__name__}: {time.time() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
