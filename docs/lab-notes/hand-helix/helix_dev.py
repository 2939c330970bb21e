"""Development study: the hand of a solved fragment map from the handedness of its α-helices.

For each solved development map of ``benchmarks/hand_pipeline_dev.py`` (train families only), an ideal
right-handed α-helix (poly-Ala, N CA C O CB) is searched over rotations (FFT translation search) and the best
correlation of the right-handed template is compared with that of its mirror image.  Writes one JSON line per map
with the scores, for the analysis in ``../hand-helix.md``.

    OMP_NUM_THREADS=1 python docs/lab-notes/hand-helix/helix_dev.py --part 0 --parts 2 --out /tmp/helix0.jsonl
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from helix_hand import helix_hand_scores  # noqa: E402

STORE = REPO / "data_build" / "hand_pipeline_dev"


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--part", type=int, default=0)
    p.add_argument("--parts", type=int, default=1)
    p.add_argument("--min-residues", type=int, default=2)
    p.add_argument("--out", required=True)
    p.add_argument("--residues", type=int, nargs="+", default=[6])
    p.add_argument("--directions", type=int, default=300)
    p.add_argument("--spins", type=int, default=2)
    a = p.parse_args()
    paths = sorted(x for x in STORE.glob("*.npz") if not x.name.endswith(".part.npz"))
    with open(a.out, "w") as fh:
        for k, path in enumerate(paths):
            if k % a.parts != a.part:
                continue
            with np.load(path) as z:
                m = {key: z[key] for key in z.files}
            if float(m["phase_error"]) >= 60 or int(m["n_residues"]) < a.min_residues:
                continue
            t0 = time.monotonic()
            row = {"id": path.stem, "n_residues": int(m["n_residues"]), "d_min": float(m["d_min"]),
                   "phase_error": float(m["phase_error"]), "wrong_hand": bool(m["wrong_hand"])}
            for n in a.residues:
                s = helix_hand_scores(m["map"].astype(np.float64), m["cell"], float(m["d_min"]), residues=n,
                                      directions=a.directions, spins=a.spins)
                row[f"h{n}"] = s
            row["seconds"] = round(time.monotonic() - t0, 2)
            fh.write(json.dumps(row) + "\n")
            fh.flush()
            print(row, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
