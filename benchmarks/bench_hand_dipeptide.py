"""Benchmark: hand cards compared on dipeptides — true held-out maps and real pipeline outputs, same maps for all.

Scores every card of ``--cards`` (default: ``dipeptide_hand``, the equal-weight mean of the two below;
``reccrysformer_dipeptide_recycled_hand``, the dipeptide pipeline's card; ``fragment_hand``) through the runtime
(:func:`crysplugins.runtime.hand.hand_logits`) on the same maps, with :mod:`bench_hand`'s building blocks:

* (a) the first ``--n-true`` test-family dipeptides of ``--data`` in shard order (every one; held-out families):
  the true density to its d_min, and the same with von Mises phase errors of mean 20°
  (:func:`crysplugins.training.hand_chirality.degraded_map`); right = the call keeps the true (L) map.
* (c) real outputs: ``patterson-density`` (default options) on the shipped ``demo`` example and on the 28 dipeptides
  at 1.5 Å of ``data_build/fragment_bench`` (the truth: the origin/hand search of the output's phases against the
  true phases; right = the call inverts exactly the maps on the wrong hand; counted on solved maps, invariant
  phase error < 60°), and the ``charge-flipping`` winners of ``--per-cell`` fragments of every cell (cached in
  ``benchmarks/out/hand/`` by bench_hand.py).  The patterson-density output map is cached in
  ``benchmarks/out/hand_dipeptide/``: which hand it is returned in depends on the pipeline's hand card, but a
  card's call is right or wrong alike on either hand (the scores are antisymmetric), so the cache serves every card.

``--transformer-per-cell K`` adds ``patterson-density`` on K fragments of every other cell (the general fragment
model's outputs, cached alike).

Per card: right counts, and for every pair of cards the maps both get wrong and those exactly one gets wrong.
Writes ``benchmarks/out/<--figure>.json`` (default ``hand_dipeptide.json``).

    OMP_NUM_THREADS=1 python benchmarks/bench_hand_dipeptide.py [--n-true 110] [--per-cell 3]
"""
from __future__ import annotations

import argparse
import itertools
import json
import time

import numpy as np
from bench_hand import bench_examples, demo_example, output_map
from figure_output import OUT, REPO, write_figure

from crysplugins.datasets.store import open_dataset
from crysplugins.errors import CrysError
from crysplugins.evaluation.compare import Example, PredictorLabel
from crysplugins.host import default_host
from crysplugins.runtime.hand import hand_logits
from crysplugins.training.hand_chirality import degraded_map

CARDS = ("dipeptide_hand", "reccrysformer_dipeptide_recycled_hand", "fragment_hand")
CACHE = OUT / "hand_dipeptide"


def logits(m: np.ndarray, cell, cards: list[str], sequence: str) -> dict[str, float]:
    """Each card's logit (> 0: "invert this map") on one map of a fragment of ``sequence``."""
    return {c: float(hand_logits(m[None], c, cells=[cell], sequences=[sequence])[0]) for c in cards}


def summary(rows: list[dict], cards: list[str], right) -> dict:
    """Right counts per card and, per pair of cards, both wrong / exactly one wrong; ``right(row, card)``."""
    out = {"n": len(rows), "right": {c: int(sum(right(r, c) for r in rows)) for c in cards}}
    out["accuracy"] = {c: out["right"][c] / len(rows) if rows else None for c in cards}
    out["pairs"] = {f"{a} | {b}": {"both_wrong": int(sum(not right(r, a) and not right(r, b) for r in rows)),
                                   "one_wrong": int(sum(right(r, a) != right(r, b) for r in rows))}
                    for a, b in itertools.combinations(cards, 2)}
    return out


def true_dipeptides(data: str, n: int, cards: list[str], seed: int = 0) -> dict:
    """(a): the first ``n`` test-family dipeptides, true maps and 20° phase error; right = logit < 0 (keep L)."""
    ds, rng, rows = open_dataset(data), np.random.default_rng(seed), []
    for shard in ds.shards("test"):
        if len(rows) >= n:
            break
        arrays = shard.load()
        for row in range(shard.n):
            if len(rows) >= n:
                break
            if int((arrays["sequence_index"][row] >= 0).sum()) != 2:
                continue
            cell, d_min = arrays["cell"][row], float(arrays["d_min"][row])
            sequence = ds.sequences(arrays["sequence_index"][row:row + 1])[0]
            rows.append({"id": str(arrays["ids"][row]), "d_min": d_min, "sequence": sequence, **{
                f"logits_{e:g}": logits(degraded_map(arrays["density"][row], cell, d_min, e, rng), cell, cards,
                                        sequence)
                for e in (0.0, 20.0)}})
    out = {f"phase_error_{e}": summary(rows, cards, lambda r, c, e=e: r[f"logits_{e}"][c] < 0) for e in ("0", "20")}
    return out | {"rows": rows}


def real_outputs(label: str, examples: list[Example], host, cards: list[str]) -> dict:
    """(c): every card's call on each output map; counts on the solved maps (refusals listed)."""
    lab = PredictorLabel.parse(label)
    rows, refused = [], []
    for ex in examples:
        try:
            rec = output_map(host, lab, ex, None if lab.name == "charge-flipping" else CACHE)
        except CrysError as exc:
            refused.append(f"{ex.id}: {exc}")
            continue
        lg = logits(rec["map"], rec["cell"], cards, ex.sequence)
        rows.append({"id": ex.id, "n_residues": ex.n_residues, "d_min": ex.d_min, "model": str(rec.get("model", "")),
                     "phase_error": round(float(rec["phase_error"]), 2), "solved": bool(rec["phase_error"] < 60),
                     "output_on_wrong_hand": bool(rec["wrong_hand"]),
                     "logits": {c: round(v, 4) for c, v in lg.items()},
                     "right": {c: (v > 0) == bool(rec["wrong_hand"]) for c, v in lg.items()}})
        print(json.dumps({"predictor": label, **rows[-1]}), flush=True)
    solved = [r for r in rows if r["solved"]]
    out = {"predictor": label, "n": len(rows), "refused": refused,
           "solved": summary(solved, cards, lambda r, c: r["right"][c])}
    short = [r for r in solved if r["n_residues"] == 2]
    if len(short) < len(solved):
        out["solved_dipeptides"] = summary(short, cards, lambda r, c: r["right"][c])
    return out | {"rows": rows}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cards", default=",".join(CARDS), help="hand cards, comma-separated")
    p.add_argument("--data", default=str(REPO / "data_build" / "frag2-15"))
    p.add_argument("--n-true", type=int, default=110, help="test-family dipeptides (true and 20° maps)")
    p.add_argument("--per-cell", type=int, default=3, help="charge-flipping fragments per fragment_bench cell")
    p.add_argument("--dipeptides", type=int, default=28, help="2 res 1.5 Å fragments through patterson-density")
    p.add_argument("--transformer-per-cell", type=int, default=0,
                   help="also K fragments of every other cell through patterson-density (the fragment model's "
                        "outputs; default 0: none)")
    p.add_argument("--figure", default="hand_dipeptide", help="output name under benchmarks/out")
    args = p.parse_args()
    cards = [c.strip() for c in args.cards.split(",") if c.strip()]
    t0, host = time.monotonic(), default_host()
    results = {"cards": cards, "true_dipeptides": true_dipeptides(args.data, args.n_true, cards), "pipeline": [
        real_outputs("patterson-density", [demo_example()], host, cards),
        real_outputs("patterson-density", bench_examples(args.dipeptides, "2res_1.5A"), host, cards),
        real_outputs("charge-flipping", bench_examples(args.per_cell), host, cards)]}
    if args.transformer_per_cell:
        others = [ex for ex in bench_examples(args.transformer_per_cell) if (ex.n_residues, ex.d_min) != (2, 1.5)]
        results["pipeline"].append(real_outputs("patterson-density", others, host, cards))
    write_figure(args.figure, results, time.monotonic() - t0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
