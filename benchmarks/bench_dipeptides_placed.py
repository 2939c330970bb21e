"""Dipeptides at 1.5 Å as placed: the mean map Pearson, with no origin or hand alignment, of each fragment
predictor's answer on every held-out fragment of the 2-residue 1.5 Å cell (paper 000's dipeptide case).

Reads ``data_build/fragment_bench/2res_1.5A`` (made by ``benchmarks/make_fragment_set.py`` from
``../shared/corpus``), leaves out the solution score's development fragments as ``bench_fragments.py`` does,
and scores each answer with ``crysplugins.evaluation.compare`` (the engine of ``crysplugins evaluate``).
Writes ``benchmarks/out/dipeptides_placed.json``.

    OMP_NUM_THREADS=1 python benchmarks/bench_dipeptides_placed.py
"""
from __future__ import annotations

import argparse
import csv
import time

import numpy as np
from bench_fragments import BENCH, DEV_POSITIONS
from figure_output import write_figure

from crysplugins.evaluation import compare
from crysplugins.host import default_host


def examples() -> list:
    folder = BENCH / "2res_1.5A"
    with open(folder / "fragments.tsv", newline="") as fh:
        rows = sorted(csv.DictReader(fh, delimiter="\t"), key=lambda r: r["id"])
    rows = [r for k, r in enumerate(rows) if k not in DEV_POSITIONS]
    return [compare.Example(r["id"], folder / f"{r['id']}_amplitudes.mtz", folder / f"{r['id']}_phases.mtz",
                            r["sequence"], float(r["d_min"]), int(r["n_residues"])) for r in rows]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--predictors", default="patterson-density,fragment-phasing")
    args = p.parse_args()
    host, exs, t0 = default_host(), examples(), time.monotonic()
    results = {}
    for label in args.predictors.split(","):
        lab = compare.PredictorLabel.parse(label)
        rows = []
        for ex in exs:
            rec = compare.evaluate(host, [lab], [ex])[0]
            rows.append({"id": ex.id, "phase_error": rec.get("phase_error"), "pearson_aligned": rec.get("pearson"),
                         "pearson_as_placed": rec.get("pearson_as_placed"), "error": rec.get("error")})
        answered = [r for r in rows if r["pearson_as_placed"] is not None and np.isfinite(r["pearson_as_placed"])]
        results[label] = {
            "fragments": len(rows), "answered": len(answered),
            "solved": sum(1 for r in answered if r["phase_error"] < 60),
            "mean_pearson_as_placed": float(np.mean([r["pearson_as_placed"] for r in answered])),
            "mean_pearson_aligned": float(np.mean([r["pearson_aligned"] for r in answered])),
            "rows": rows}
        print(f"{label}: {len(answered)}/{len(rows)} answered, as placed "
              f"{results[label]['mean_pearson_as_placed']:.3f}, origin/hand aligned "
              f"{results[label]['mean_pearson_aligned']:.3f}", flush=True)
    write_figure("dipeptides_placed", results, seconds=time.monotonic() - t0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
