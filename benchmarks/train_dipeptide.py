"""Build the shipped dipeptide ``patterson-density`` models from ../shared/corpus, by product commands only.

Each stage is one ``crysplugins`` command (printed before it runs); ``all`` runs them in order, ``--dry-run``
only prints them.  The three shipped models and the commands that made them:

    dataset        crysplugins dataset build    -> data_build/dipeptide (67,911 train / 8,334 test dipeptides)
    train          crysplugins train reccrysformer --config reccrysformer_dipeptide   (90 min, one core; resumable)
    export         crysplugins export RUN       -> models/reccrysformer_dipeptide.{onnx,json}
    evaluate       python -m crysplugins.evaluation.evaluate_dataset (whole test split, ONNX; card metrics)
    templates      crysplugins dataset templates (the first model's refined predictions, 10 % of train)
    recycle        crysplugins train reccrysformer --recycle-from RUN --templates rc1_initial   (40 min)
    hand           crysplugins train hand-chirality (the recycled model's refined maps; numpy, 8 min)
    export-hand    crysplugins export HAND_RUN  -> models/reccrysformer_dipeptide_recycled_hand.json
    export-recycled crysplugins export RECYCLED_RUN --hand-model ...  -> models/reccrysformer_dipeptide_recycled.*
    example        python benchmarks/card_example.py (the shipped example's figures into the card)

The pipeline keys of the first model's card (``recycled_model``, ``default_cycles: 3``,
``final_dm_cycles: 200``, ``default_output: refined``) name the recycled model and the pipeline's defaults;
no command writes them, so after ``export`` they are set in the card by hand (docs/lab-notes/reccrysformer.md
says how each was chosen).  The shipped example is 2XHE_1_460 in ``crysplugins/data/examples/patterson_density``.

    OMP_NUM_THREADS=1 python benchmarks/train_dipeptide.py all --dry-run
    OMP_NUM_THREADS=1 python benchmarks/train_dipeptide.py train --minutes 90
"""
from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus"
CLI = [sys.executable, "-m", "crysplugins.cli"]
NAME = "reccrysformer_dipeptide"
RECYCLED = f"{NAME}_recycled"
HAND = f"{RECYCLED}_hand"


def commands(a: argparse.Namespace) -> dict[str, list[list[str]]]:
    """Every stage's commands, with the settings of the shipped models."""
    recycled_run, hand_run = f"{a.run}_recycled", f"{a.run}_hand"
    return {
        "dataset": [CLI + ["dataset", "build", "--structures", str(CORPUS / "structures"), "--out", a.data,
                           "--residues", "2", "--max-grid", "32", "--workers", str(a.workers),
                           "--shard-size", "2048", "--seed", "0"]],
        "train": [CLI + ["train", "reccrysformer", "--config", "reccrysformer_dipeptide", "--data", a.data,
                         "--out", a.run, "--max-minutes", str(a.minutes), "--epochs", "3"]
                  + (["--resume"] if (REPO / a.run / "checkpoint.pt").exists() else [])],
        "export": [CLI + ["export", a.run, "--name", NAME, "--models-dir", a.models]],
        "evaluate": [[sys.executable, "-m", "crysplugins.evaluation.evaluate_dataset", "--model",
                      f"{a.models}/{NAME}.json", "--data", a.data, "--out", a.run, "--update-card"]],
        "templates": [CLI + ["dataset", "templates", a.run, "--data", a.data, "--name", "rc1_initial",
                             "--fraction", "0.1", "--test-fraction", "0.25", "--cycles", "50",
                             "--workers", str(a.workers), "--threads", "1", "--refined-rule", "refiner"]],
        "recycle": [CLI + ["train", "reccrysformer", "--config", f"{a.run}/config.json", "--data", a.data,
                           "--out", recycled_run, "--recycle-from", a.run, "--templates", "rc1_initial",
                           "--max-minutes", "40", "--set", "train.max_steps=null", "--set", "train.epochs=1000",
                           "--set", "train.eval_every_steps=null", "--lr", "2.5e-4", "--max-lr", "8e-4",
                           "--threads", "1", "--refined-prob", "0.7", "--template-noise", "0", "--no-transfer"]],
        "hand": [CLI + ["train", "hand-chirality", "--data", a.data, "--predictor-run", recycled_run,
                        "--templates", "rc1_initial", "--out", hand_run, "--hand-input", "refined", "--threads", "1"]],
        "export-hand": [CLI + ["export", hand_run, "--name", HAND, "--models-dir", a.models]],
        "export-recycled": [CLI + ["export", recycled_run, "--name", RECYCLED, "--models-dir", a.models,
                                   "--hand-model", HAND]],
        "example": [[sys.executable, str(REPO / "benchmarks" / "card_example.py")]],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    stages = list(commands(argparse.Namespace(run="r", data="d", models="m", minutes=0, workers=1)))
    ap.add_argument("stage", choices=stages + ["all"])
    ap.add_argument("--run", default="runs/dipeptide_v1", help="the first model's run folder")
    ap.add_argument("--data", default="data_build/dipeptide")
    ap.add_argument("--models", default="models")
    ap.add_argument("--minutes", type=float, default=90, help="training minutes of the first model")
    ap.add_argument("--workers", type=int, default=2, help="processes for the dataset and the templates")
    ap.add_argument("--dry-run", action="store_true", help="print the commands only")
    args = ap.parse_args()
    plan = commands(args)
    for stage in stages if args.stage == "all" else [args.stage]:
        for cmd in plan[stage]:
            print(time.strftime("%H:%M:%S"), "$", shlex.join(cmd), flush=True)
            if not args.dry_run:
                subprocess.run(cmd, check=True, cwd=REPO)
    return 0


if __name__ == "__main__":
    sys.exit(main())
