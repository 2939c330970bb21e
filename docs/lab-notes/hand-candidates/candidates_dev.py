"""Development study: the hand read off every candidate of fragment-phasing, not only off the winner.

For the train-family fragments of ``benchmarks/hand_pipeline_dev.py`` (d_min ≥ ``--min-d``), fragment-phasing's
search is re-run (no network, as in that script) and for every candidate are recorded: its DM CC and rank, its
hand logit (``fragment_phasing_hand`` on its centred map), its alignment to the winner (origin/hand search of its
phases against the winner's, amplitudes only) and, for the analysis only, its alignment to the true phases.

    OMP_NUM_THREADS=1 python docs/lab-notes/hand-candidates/candidates_dev.py --part 0 --parts 2 --out /tmp/c0.jsonl
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO))

import hand_pipeline_dev as dev  # noqa: E402


def main() -> int:
    from crysplugins.crystal.maps import centre_density
    from crysplugins.crystal.origin import search_origin_hand
    from crysplugins.runtime import fragment_phasing as fp
    from crysplugins.runtime.hand import hand_logits

    p = argparse.ArgumentParser()
    p.add_argument("--part", type=int, default=0)
    p.add_argument("--parts", type=int, default=1)
    p.add_argument("--min-d", type=float, default=2.2)
    p.add_argument("--out", required=True)
    a = p.parse_args()
    rows = dev.drawn_rows()
    done = {json.loads(line)["id"] for line in open(a.out)} if Path(a.out).exists() else set()
    with open(a.out, "a") as fh:
        for frag in dev.dev_fragments(dev.DATA, rows[a.part::a.parts]):
            if frag.d_min < a.min_d or frag.ident in done:
                continue
            t0 = time.monotonic()
            result = fp.solve(fp.make_setup(frag.cell, frag.hkl, frag.f, frag.sequence))
            win = result.winner.refined
            cands = []
            for c in result.candidates:
                truth = search_origin_hand(frag.hkl, frag.f, frag.phi_true, c.refined.phases)
                rel = search_origin_hand(frag.hkl, frag.f, win.phases, c.refined.phases)
                rho, _ = centre_density(np.asarray(c.refined.map.array, dtype=np.float64), cell=frag.cell)
                logit = float(hand_logits(rho[None], fp.HAND_MODEL, cells=[np.array(frag.cell.parameters)],
                                          sequences=[frag.sequence])[0])
                cands.append({"name": c.name, "dm_cc": c.refined.score, "rank": c.rank, "probability": c.probability,
                              "error": truth.phase_error, "wrong_hand": truth.inverted,
                              "to_winner": rel.phase_error, "inverted_to_winner": rel.inverted, "logit": logit})
            out = {"id": frag.ident, "n_residues": len(frag.sequence), "d_min": frag.d_min, "best": result.best,
                   "seconds": time.monotonic() - t0, "candidates": cands}
            fh.write(json.dumps(out) + "\n")
            fh.flush()
            print(frag.ident, len(cands), f"{time.monotonic() - t0:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
