"""Mean Pearson per predictor of a `crysplugins evaluate` results.json, with paired differences against one
of them (bootstrap 95 % interval over examples, 2,000 resamples, seed 0).

    python benchmarks/paired_pearson.py runs/val600_k0123/results.json --base patterson-density:cycles=1
"""
from __future__ import annotations

import argparse
import json

import numpy as np


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results")
    ap.add_argument("--base", required=True, help="predictor label the others are compared with")
    args = ap.parse_args(argv)
    by: dict[str, dict[str, dict]] = {}
    for rec in json.load(open(args.results))["records"]:
        by.setdefault(rec["predictor"], {})[rec["id"]] = rec
    if args.base not in by:
        raise SystemExit(f"{args.results} has no predictor '{args.base}' (it has: {', '.join(by)}).")
    base = by[args.base]
    for label, recs in by.items():
        pc = np.array([r["pearson"] for r in recs.values()], dtype=float)
        pe = np.array([r["phase_error"] for r in recs.values()], dtype=float)
        line = (f"{label}: n {len(pc)}, mean Pearson {np.nanmean(pc):.4f}, mean phase error {np.nanmean(pe):.2f}°, "
                f"< 60°: {np.mean(pe < 60):.3f}")
        if label != args.base:
            ids = sorted(set(recs) & set(base))
            d = np.array([recs[i]["pearson"] - base[i]["pearson"] for i in ids])
            boot = np.random.default_rng(0).choice(d, size=(2000, len(d))).mean(axis=1)  # as bench_recycling.py
            line += (f"; paired vs {args.base}: {d.mean():+.4f} "
                     f"[{np.percentile(boot, 2.5):+.4f}, {np.percentile(boot, 97.5):+.4f}]")
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
