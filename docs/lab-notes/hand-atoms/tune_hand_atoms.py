"""Tuning of the ``fragment_hand_atoms`` card on train-family maps only (never the test families).

For every k-th train map of 2 and of 3-5 residues in data_build/frag2-15: the true density to its d_min and the same
with von Mises phase errors of mean 20° (``degraded_map``); atoms fitted with B = 20, 30, 40 Å² and the Cα vote of
the covalent match, its matched share, and the gated card's logit.  Prints, per B, right / wrong / no vote, and for
B = 30 the calls with a min_matched gate (vote if it passes, else the gated card).

    OMP_NUM_THREADS=1 python docs/lab-notes/hand-atoms/tune_hand_atoms.py [--every 7] [--n 80] [--out tuning.json]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import gemmi
import numpy as np

from crysplugins.crystal.atom_fit import build_atoms
from crysplugins.crystal.covalent_match import hand_vote, molecule_graph
from crysplugins.datasets.store import open_dataset
from crysplugins.runtime.hand import hand_logits
from crysplugins.training.hand_chirality import degraded_map

REPO = Path(__file__).resolve().parents[3]
B_VALUES = (20.0, 30.0, 40.0)
GATES = (0.0, 0.8, 0.85, 0.9, 0.95, 1.0)


def train_maps(lengths: tuple[int, int], every: int, n: int, errors: tuple[float, ...], rng: np.random.Generator):
    """(row, map, cell, heavy-atom count) for each phase error (degrees) of every ``every``-th train example of
    ``lengths`` residues, up to ``n`` examples; the row holds the id, sequence, d_min, error and the gated card's
    logit."""
    ds = open_dataset(REPO / "data_build" / "frag2-15")
    k = taken = 0
    for shard in ds.shards("train"):
        a = shard.load()
        seqs = ds.sequences(a["sequence_index"])
        for r in range(shard.n):
            if not lengths[0] <= len(seqs[r]) <= lengths[1]:
                continue
            k += 1
            if k % every:
                continue
            cell, d_min = a["cell"][r], float(a["d_min"][r])
            uc = gemmi.UnitCell(*[float(v) for v in cell])
            n_atoms = len(molecule_graph(seqs[r]).atoms)
            for err in errors:
                m = degraded_map(a["density"][r], cell, d_min, err, rng)
                row = {"id": str(a["ids"][r]), "sequence": seqs[r], "d_min": d_min, "error": err,
                       "gated": float(hand_logits(m[None], "fragment_hand_gated", cells=[cell])[0])}
                yield row, m, uc, n_atoms
            taken += 1
            if taken >= n:
                return


def rows_for(lengths: tuple[int, int], every: int, n: int, rng: np.random.Generator) -> list[dict]:
    rows = []
    for row, m, uc, n_atoms in train_maps(lengths, every, n, (0.0, 20.0), rng):
        for b in B_VALUES:
            t0 = time.perf_counter()
            read = hand_vote(build_atoms(m, uc, n_atoms, b), uc, row["sequence"])
            row[f"B{b:g}"] = {"vote": read.vote, "matched": read.matched / read.n_atoms,
                              "seconds": time.perf_counter() - t0}
        rows.append(row)
    return rows


def summary(rows: list[dict]) -> dict:
    out = {}
    for err in (0.0, 20.0):
        sub = [r for r in rows if r["error"] == err]
        gated = np.array([r["gated"] for r in sub])
        entry = {"n": len(sub), "gated_right": int((gated < 0).sum())}
        for b in B_VALUES:
            v = np.array([r[f"B{b:g}"]["vote"] for r in sub])
            entry[f"B{b:g}"] = {"right": int((v > 0).sum()), "wrong": int((v < 0).sum()), "no_vote": int((v == 0).sum()),
                                "median_seconds": float(np.median([r[f"B{b:g}"]["seconds"] for r in sub]))}
        v = np.array([r["B30"]["vote"] for r in sub])
        share = np.array([r["B30"]["matched"] for r in sub])
        entry["B30_gates"] = {}
        for g in GATES:
            entry["B30_gates"][f"{g:g}"] = gated_calls(v, share, gated, g)
        out[f"phase_error_{err:g}"] = entry
    return out


def gated_calls(vote: np.ndarray, share: np.ndarray, gated: np.ndarray, gate: float) -> dict:
    """Votes that pass the gate (a Cα read and ≥ ``gate`` of the atoms matched), how many are right (L), and the
    calls right when the gated card's logit decides the rest."""
    use = (vote != 0) & (share >= gate)
    return {"votes": int(use.sum()), "votes_right": int((vote[use] > 0).sum()),
            "calls_right": int(np.where(use, vote > 0, gated < 0).sum())}


def tune(groups, every: int, seed: int, rows_for, summary, out: str) -> int:
    """rows_for(lengths, every, n, rng) and summary(rows) of each (name, lengths, n) group, printed and written
    to ``out`` (JSON)."""
    rng = np.random.default_rng(seed)
    result = {}
    for name, lengths, n in groups:
        rows = rows_for(lengths, every, n, rng)
        result[name] = {"summary": summary(rows), "rows": rows}
        print(name, json.dumps(result[name]["summary"], indent=1), flush=True)
    Path(out).write_text(json.dumps(result, indent=1))
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--every", type=int, default=7)
    p.add_argument("--n", type=int, default=80, help="maps per length group")
    p.add_argument("--out", default=str(Path(__file__).with_name("tuning.json")))
    args = p.parse_args()
    groups = (("dipeptides", (2, 2), args.n), ("3-5 residues", (3, 5), args.n))
    return tune(groups, args.every, 0, rows_for, summary, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
