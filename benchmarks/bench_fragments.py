"""Benchmark: charge-flipping, fragment-phasing and patterson-density on held-out fragments, per cell.

Cells: {2, 5, 10, 15} residues x {1.5, 2.0, 2.25, 2.5} Å from ``data_build/fragment_bench``
(``benchmarks/make_fragment_set.py``: the test families of the corpus).  Every predictor runs through
``crysplugins.evaluation.compare`` (the engine of ``crysplugins evaluate``): success = origin/hand-invariant
phase error < 60°, as-placed Pearson with the true density map, wall time of the prediction.
``patterson-density`` is run where its installed model covers the cell (else reported as not covered).

Fragments are taken round by round (one per cell per round) in the order of each cell's ``fragments.tsv``
sorted by id, leaving out the solution score's development fragments (positions 0 and 2, see
``fit_solution_score.py``).  Records are appended to ``benchmarks/out/fragments_records.jsonl`` (the run
resumes) and the summary is rewritten after every round: ``benchmarks/out/fragments.json`` and ``.md``.

    OMP_NUM_THREADS=1 .venv-test/bin/python benchmarks/bench_fragments.py --per-cell 25
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "data_build" / "fragment_bench"
OUT = REPO / "benchmarks" / "out"
DEV_POSITIONS = {0, 2}
PREDICTORS = ("charge-flipping", "fragment-phasing", "patterson-density")


def cell_examples(per_cell: int, only: str | None = None) -> list[list]:
    """Rounds of compare.Example, one per cell per round, development fragments left out; ``only``: a
    comma-separated list of cell folder names to keep."""
    from crysplugins.evaluation.compare import Example

    cells = []
    for folder in sorted(BENCH.iterdir(), key=lambda p: (int(p.name.split("res")[0]), p.name)):
        if not (folder / "fragments.tsv").exists() or (only and folder.name not in only.split(",")):
            continue
        with open(folder / "fragments.tsv", newline="") as fh:
            rows = sorted(csv.DictReader(fh, delimiter="\t"), key=lambda r: r["id"])
        rows = [r for k, r in enumerate(rows) if k not in DEV_POSITIONS][:per_cell]
        cells.append([Example(r["id"], folder / f"{r['id']}_amplitudes.mtz", folder / f"{r['id']}_phases.mtz",
                              r["sequence"], float(r["d_min"]), int(r["n_residues"])) for r in rows])
    rounds = max((len(c) for c in cells), default=0)
    return [[c[i] for c in cells if i < len(c)] for i in range(rounds)]


def summarise(records: list[dict]) -> list[dict]:
    """One row per predictor and cell."""
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault((r["n_residues"], r["d_min"], r["predictor"]), []).append(r)
    rows = []
    for (n, d, pred), recs in sorted(groups.items()):
        covered = [r for r in recs if not r.get("not_covered")]
        if not covered:
            rows.append({"n_residues": n, "d_min": d, "predictor": pred, "n": 0, "note": "model does not cover"})
            continue
        pe = np.array([r["phase_error"] for r in covered], dtype=float)
        pc = np.array([r["pearson"] for r in covered], dtype=float)
        placed = np.array([r.get("pearson_as_placed", np.nan) for r in covered], dtype=float)
        tm = np.array([r.get("seconds", np.nan) for r in covered], dtype=float)
        rows.append({"n_residues": n, "d_min": d, "predictor": pred, "n": len(covered),
                     "success_rate": float(np.mean(np.nan_to_num(pe, nan=180.0) < 60.0)),
                     "median_phase_error": float(np.nanmedian(pe)) if np.isfinite(pe).any() else None,
                     "mean_pearson": float(np.nanmean(pc)) if np.isfinite(pc).any() else None,
                     "mean_pearson_as_placed": float(np.nanmean(placed)) if np.isfinite(placed).any() else None,
                     "median_seconds": float(np.nanmedian(tm)) if np.isfinite(tm).any() else None})
    return rows


def paired(records: list[dict], a: str = "fragment-phasing", b: str = "charge-flipping") -> dict:
    """Fragments run by both: how often only one is right, and the median of the per-fragment time ratio a/b."""
    by = {(r["id"], r["n_residues"], r["d_min"], r["predictor"]): r for r in records}
    pairs = [(by[(i, n, d, a)], by[(i, n, d, b)]) for (i, n, d, p) in by if p == a and (i, n, d, b) in by]
    right = lambda r: np.nan_to_num(r["phase_error"], nan=180.0) < 60.0  # noqa: E731
    ratios = [x["seconds"] / y["seconds"] for x, y in pairs if x.get("seconds") and y.get("seconds")]
    return {"fragments": len(pairs), f"only {a} right": int(sum(right(x) and not right(y) for x, y in pairs)),
            f"only {b} right": int(sum(right(y) and not right(x) for x, y in pairs)),
            "median time ratio": float(np.median(ratios)) if ratios else None,
            "time ratio of the medians": (float(np.median([x["seconds"] for x, _ in pairs])
                                          / np.median([y["seconds"] for _, y in pairs])) if pairs else None)}


def markdown(rows: list[dict]) -> str:
    lines = ["| residues | d_min (Å) | predictor | n | success (< 60°) | median error (°) | mean Pearson, "
             "origin/hand aligned | mean Pearson as placed | median time (s) |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["n"] == 0:
            lines.append(f"| {r['n_residues']} | {r['d_min']:g} | {r['predictor']} | 0 | {r['note']} | | | | |")
            continue
        placed = r.get("mean_pearson_as_placed")
        lines.append(f"| {r['n_residues']} | {r['d_min']:g} | {r['predictor']} | {r['n']} | "
                     f"{r['success_rate']:.0%} | {r['median_phase_error']:.1f} | {r['mean_pearson']:.3f} | "
                     f"{'—' if placed is None else f'{placed:.3f}'} | {r['median_seconds']:.2f} |")
    return "\n".join(lines) + "\n"


def _rewrite(log: Path, records: list[dict]) -> None:
    """The records file with only ``records`` (one JSON object a line)."""
    log.write_text("".join(json.dumps(r, default=float) + "\n" for r in records))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--per-cell", type=int, default=25)
    p.add_argument("--predictors", default=",".join(PREDICTORS))
    p.add_argument("--out", default=str(OUT))
    p.add_argument("--rerun-below", type=float, default=None,
                   help="run fragment-phasing again where its recorded score is below this (after a change)")
    p.add_argument("--rerun-dm-below", type=float, default=None,
                   help="run fragment-phasing again where its winner's DM CC is below this (after a change that "
                        "acts only when no candidate reaches the stopping CC)")
    p.add_argument("--cells", default=None, help="only these cells, e.g. 15res_2A,10res_2.5A (to split a run)")
    p.add_argument("--rerun", default="", help="drop the records of these predictors (comma-separated; in --cells "
                   "only, if given) first, so that the run makes them again (after a change to them, e.g. their hand "
                   "model)")
    p.add_argument("--summary-only", action="store_true", help="rewrite the summary from the records only")
    args = p.parse_args()

    from crysplugins.errors import CrysError
    from crysplugins.evaluation import compare
    from crysplugins.host import default_host

    host = default_host()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "fragments_records.jsonl"
    records = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    for scalar, below in (("score", args.rerun_below), ("dm_score", args.rerun_dm_below)):
        if below is not None:  # drop those fragment-phasing records, so that the run below makes them again
            records = [r for r in records if not (r["predictor"] == "fragment-phasing"
                                                  and r.get("scalars", {}).get(scalar, 1.0) < below)]
            _rewrite(log, records)
    if args.rerun:
        again = {x.strip() for x in args.rerun.split(",")}
        cells = set(args.cells.split(",")) if args.cells else None
        records = [r for r in records if not (r["predictor"] in again and
                                              (cells is None or f"{r['n_residues']}res_{r['d_min']:g}A" in cells))]
        _rewrite(log, records)
    done = {(r["id"], r["n_residues"], r["d_min"], r["predictor"]) for r in records}
    labels = [compare.PredictorLabel.parse(x) for x in args.predictors.split(",") if x in host.predictors]
    t0 = time.monotonic()
    rounds = [] if args.summary_only else cell_examples(args.per_cell, args.cells)
    if args.summary_only:
        write_summary(out, records, {"command": " ".join(sys.argv)})
    for k, rnd in enumerate(rounds):
        for ex in rnd:
            for lab in labels:
                if (ex.id, ex.n_residues, ex.d_min, lab.label) in done:
                    continue
                rec = compare.evaluate(host, [lab], [ex])[0]
                rec.pop("shells", None)
                rec["not_covered"] = "covers" in str(rec.get("error", "")) and lab.name == "patterson-density"
                records.append(rec)
                with open(log, "a") as fh:
                    fh.write(json.dumps(rec, default=float) + "\n")
                if not rec["not_covered"]:
                    print(f"{lab.label} {ex.n_residues} res {ex.d_min:g} A {ex.id}: {rec['phase_error']:.1f} deg, "
                          f"Pearson {rec['pearson']:.3f}, {rec.get('seconds', float('nan')):.1f} s", flush=True)
        write_summary(out, records, {"command": " ".join(sys.argv), "rounds_done": k + 1,
                                     "seconds_this_run": round(time.monotonic() - t0, 1)})
        print(f"round {k + 1} done ({time.monotonic() - t0:.0f} s)", flush=True)
    return 0


def write_summary(out: Path, records: list[dict], meta: dict) -> None:
    """``fragments.json`` (meta, rows, paired comparison) and ``fragments.md``."""
    rows = summarise(records)
    meta = dict(meta, date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                machine="2-core CPU shared with other jobs, OMP_NUM_THREADS=1; times are wall-clock")
    pair = paired(records)
    (out / "fragments.json").write_text(json.dumps({"meta": meta, "rows": rows, "paired": pair}, indent=1,
                                                   default=float))
    (out / "fragments.md").write_text(markdown(rows) + "\nfragment-phasing vs charge-flipping, paired: "
                                      + json.dumps(pair) + "\n")


if __name__ == "__main__":
    sys.exit(main())
