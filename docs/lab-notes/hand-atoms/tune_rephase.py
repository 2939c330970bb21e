"""Tuning of the atom fit's partial-structure recycling (``rephase_rounds``, ``seed_share``, ``per_round`` of the
``fragment_hand_atoms`` card) on train-family maps only (never the test families).

For every k-th train map of 2 and of 3-5 residues in data_build/frag2-15: the true density to its d_min and the same
with von Mises phase errors of mean 20° and 35° (``degraded_map``); atoms fitted by ``build_atoms`` with each variant
below, the Cα vote of the covalent match and its matched share, and the gated card's logit (the fallback).  Prints
per variant the votes that pass the card's gate (0.85), how many are right, the calls right with the fallback, and
the median time of one fit.

    OMP_NUM_THREADS=1 python docs/lab-notes/hand-atoms/tune_rephase.py [--every 7] [--n2 40] [--n35 30]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from tune_hand_atoms import gated_calls, train_maps, tune  # the card's first tuning, its maps and counts

from crysplugins.crystal.atom_fit import build_atoms
from crysplugins.crystal.covalent_match import hand_vote

ERRORS = (0.0, 20.0, 35.0)
GATE = 0.85
VARIANTS = {
    "no recycling": {},
    "2 rounds, whole fit as seed": {"rephase_rounds": 2, "seed_share": 1.0},
    "2 rounds, heaviest 2/3 as seed": {"rephase_rounds": 2},
    "2 rounds, heaviest 2/3, 3 atoms per round (card)": {"rephase_rounds": 2, "per_round": 3},
}


def rows_for(lengths: tuple[int, int], every: int, n: int, rng: np.random.Generator) -> list[dict]:
    rows = []
    for row, m, uc, n_atoms in train_maps(lengths, every, n, ERRORS, rng):
        for name, settings in VARIANTS.items():
            t0 = time.perf_counter()
            fitted = build_atoms(m, uc, n_atoms, 30.0, 40, **settings)
            read = hand_vote(fitted, uc, row["sequence"])
            row[name] = {"vote": read.vote, "matched": read.matched / read.n_atoms,
                         "residual": fitted.residual, "seconds": time.perf_counter() - t0}
        rows.append(row)
    return rows


def summary(rows: list[dict]) -> dict:
    out = {}
    for err in ERRORS:
        sub = [r for r in rows if r["error"] == err]
        gated = np.array([r["gated"] for r in sub])
        entry = {"n": len(sub), "gated_card_right": int((gated < 0).sum())}
        for name in VARIANTS:
            entry[name] = gated_calls(np.array([r[name]["vote"] for r in sub]),
                                      np.array([r[name]["matched"] for r in sub]), gated, GATE)
            entry[name]["median_seconds"] = float(np.median([r[name]["seconds"] for r in sub]))
        out[f"phase_error_{err:g}"] = entry
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--every", type=int, default=7)
    p.add_argument("--n2", type=int, default=40, help="dipeptide maps")
    p.add_argument("--n35", type=int, default=30, help="maps of 3-5 residues")
    p.add_argument("--out", default=str(Path(__file__).with_name("rephase_tuning.json")))
    args = p.parse_args()
    groups = (("dipeptides", (2, 2), args.n2), ("3-5 residues", (3, 5), args.n35))
    return tune(groups, args.every, 1, rows_for, summary, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
