"""Export a trained solvent U-net to models/<name>.onnx + <name>.json (the card, with P_U): a thin wrapper
over ``crysplugins export``.

P_U (Skubák 2024, section 2.3) is calibrated through the exported model on training-family crystals (the
run's ``sources``, data_build/solvent/train_sources.npz built by benchmarks/build_solvent_sources.py;
``n_calibration`` of them).  Several checkpoints export their ensemble (mean class probabilities).

    OMP_NUM_THREADS=1 python benchmarks/export_solvent_unet.py runs/solvent-unet/best.pt --name solvent-unet
"""
from __future__ import annotations

import argparse
import shlex
import sys

from crysplugins.cli import main as crysplugins


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint", nargs="+", help="one checkpoint, or several for an ensemble")
    ap.add_argument("--name", default="solvent-unet")
    ap.add_argument("--out", default="models")
    args = ap.parse_args()
    argv = ["export", *args.checkpoint, "--name", args.name, "--models-dir", args.out]
    print("crysplugins " + shlex.join(argv), flush=True)
    return crysplugins(argv)


if __name__ == "__main__":
    sys.exit(main())
