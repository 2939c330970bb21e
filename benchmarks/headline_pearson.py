"""The headline figure: mean map Pearson of ``patterson-density`` on the dipeptide dataset's held-out test split.

It runs the plugin exactly as ``crysplugins predict`` does (the card's defaults: three recycling cycles,
the final density modification, the hand model, centring; output = the refined map) on every test example
of the dataset (``<id>_amplitudes.mtz`` + sequence in, ``<id>_phases.mtz`` for the truth), through
``crysplugins.evaluation.compare.evaluate`` (the engine of ``crysplugins evaluate``) with ``--origin never``:
the maps are scored as placed, since the pipeline puts them where the training data put the fragment.
``--workers N`` splits the examples over N processes and merges their records, so the whole split needs
no hand-made folders.  ``--every K`` takes every K-th example (a quicker sample).

The dataset is built from ../shared/corpus by the product (about 12 minutes on two cores, 3.2 GB)::

    crysplugins dataset build --structures ../shared/corpus/structures --out data_build/dipeptide \\
        --residues 2 --max-grid 32 --workers 2 --shard-size 2048 --seed 0

Writes ``benchmarks/out/headline_pearson.json`` (summary) and the per-example records under
``benchmarks/out/headline_pearson/`` (results.json, summary.md; not committed).

    OMP_NUM_THREADS=1 CRYSPLUGINS_THREADS=1 python benchmarks/headline_pearson.py --data data_build/dipeptide --workers 2
"""
from __future__ import annotations

import argparse
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from crysplugins.evaluation import compare
from crysplugins.host import default_host
from figure_output import OUT, write_figure


def evaluate_chunk(labels: list[str], examples: list[compare.Example]) -> list[dict]:
    """One worker: a fresh plugin host, every predictor on its share of the examples."""
    return compare.evaluate(default_host(), [compare.PredictorLabel.parse(t) for t in labels], examples,
                            origin="never")


def headline(records: list[dict]) -> dict:
    """Per predictor: n, mean and median Pearson, mean phase error, share under 60°, median seconds."""
    out = {}
    for label in dict.fromkeys(r["predictor"] for r in records):
        sel = [r for r in records if r["predictor"] == label]
        pc = np.array([r["pearson"] for r in sel], dtype=float)
        pe = np.array([r["phase_error"] for r in sel], dtype=float)
        tm = np.array([r.get("seconds", np.nan) for r in sel], dtype=float)
        out[label] = {"n": len(sel), "errors": sum("error" in r for r in sel),
                      "mean_pearson": round(float(np.nanmean(pc)), 4),
                      "median_pearson": round(float(np.nanmedian(pc)), 4),
                      "mean_phase_error": round(float(np.nanmean(pe)), 2),
                      "under_60_deg": round(float(np.mean(np.nan_to_num(pe, nan=180.0) < compare.SUCCESS_CUTOFF)), 4),
                      "median_seconds": round(float(np.nanmedian(tm)), 3)}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="data_build/dipeptide", help="dataset folder (crysplugins dataset build)")
    ap.add_argument("--predictor", action="append", default=None,
                    help="predictor label (repeat; default patterson-density, i.e. the card's defaults)")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--every", type=int, default=1, help="every K-th test example (1 = the whole split)")
    ap.add_argument("--figure", default="headline_pearson")
    args = ap.parse_args()
    labels = args.predictor or ["patterson-density"]
    examples = compare.examples_from_dataset(args.data, "test")[:: args.every]
    chunks = [examples[i:: args.workers] for i in range(args.workers)]
    t0 = time.perf_counter()
    with ProcessPoolExecutor(args.workers) as pool:
        records = [r for part in pool.map(evaluate_chunk, [labels] * args.workers, chunks) for r in part]
    seconds = time.perf_counter() - t0
    meta = {"predictors": labels, "dataset": args.data, "split": "test", "every": args.every,
            "examples": len(examples), "origin": "never", "seconds": round(seconds, 1)}
    compare.write_results(OUT / args.figure, records, compare.summarise(records), meta)
    summary = headline(records)
    print(summary)
    write_figure(args.figure, {"dataset": args.data, "every": args.every, "examples": len(examples),
                               "summary": summary}, seconds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
