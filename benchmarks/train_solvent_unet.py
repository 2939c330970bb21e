"""Train the slim solvent U-net the way the shipped model was trained: a thin wrapper over
``crysplugins train solvent-unet`` (the shared Trainer).

Adam without weight decay or clipping, a cosine learning-rate decay from ``--lr`` to ``--lr-min`` over the
time budget, a window-size schedule (small windows first for speed, 48³ at the end), an evaluation and a
checkpoint every ``--eval-every`` minutes, the best model by validation accuracy in RUN_DIR/best.pt, and a
resume when RUN_DIR/checkpoint.pt exists.  Training data: data_build/solvent/*.npz built by
benchmarks/build_solvent_sources.py from ../shared/corpus.

    OMP_NUM_THREADS=1 nohup nice -n 5 python benchmarks/train_solvent_unet.py --minutes 60 &

prints the ``crysplugins train`` command it runs.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from crysplugins.cli import main as crysplugins


def command(args: argparse.Namespace) -> list[str]:
    """The ``crysplugins train`` arguments equivalent to this script's options."""
    schedule = []
    for part in args.schedule.split(","):
        wb, share = part.split(":")
        window, batch = wb.split("x")
        schedule.append([int(window), int(batch), float(share)])
    sets = {"base": args.base, "window_schedule": schedule, "steps_per_epoch": 10 ** 9,
            "phase_error_range": list(args.phase_error_range), "val_phase_error": args.val_phase_error,
            "train.schedule": "cosine", "train.final_lr": args.lr_min, "train.weight_decay": 0.0,
            "train.clip": 0.0, "train.eval_every_minutes": args.eval_every,
            "train.checkpoint_minutes": args.eval_every, "train.best_metric": "val_accuracy",
            "lv_wrong_weight": args.lv_wrong_weight, "dm_share": args.dm_share}
    argv = ["train", "solvent-unet", "--data", args.data, "--out", args.run_dir, "--max-minutes", str(args.minutes),
            "--lr", str(args.lr), "--epochs", "1", "--threads", str(args.threads)]
    for key, value in sets.items():
        argv += ["--set", f"{key}={json.dumps(value, separators=(',', ':'))}"]
    if args.init and not (Path(args.run_dir) / "checkpoint.pt").exists():
        argv += ["--init-from", args.init]
    if (Path(args.run_dir) / "checkpoint.pt").exists():
        argv.append("--resume")
    return argv


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run-dir", default="runs/solvent-unet")
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--base", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--lr-min", type=float, default=1e-4)
    ap.add_argument("--schedule", default="32x8:0.7,48x4:0.3",
                    help="window x batch : fraction of the time budget, in order")
    ap.add_argument("--eval-every", type=float, default=4.0, help="minutes between evaluations/checkpoints")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--init", default=None, help="start from the weights of this run or checkpoint (fine-tuning)")
    ap.add_argument("--lv-wrong-weight", type=float, default=0.0,
                    help="extra loss weight of the voxels the local-rms mask of the same map gets wrong")
    ap.add_argument("--dm-share", type=float, default=0.0,
                    help="share of the training maps taken from density modification a few cycles in")
    ap.add_argument("--phase-error-range", type=float, nargs=2, default=(35.0, 80.0), metavar=("LO", "HI"),
                    help="mean phase errors (degrees) drawn for the training maps")
    ap.add_argument("--val-phase-error", type=float, default=65.0, help="mean phase error of the validation maps")
    ap.add_argument("--data", default="data_build/solvent",
                    help="folder with train_sources.npz and val_sources.npz (benchmarks/build_solvent_sources.py)")
    argv = command(ap.parse_args())
    print("crysplugins " + shlex.join(argv), flush=True)
    return crysplugins(argv)


if __name__ == "__main__":
    sys.exit(main())
