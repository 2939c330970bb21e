"""Merge `crysplugins evaluate` runs (e.g. halves of a split run on two cores) into one results folder.

Each input is a run folder or its results.json, optionally followed by ``::OLD::NEW`` to rename a predictor
label (labels may hold ``:`` and ``=``, never ``::``), to set one run's predictor beside another's of the
same name, e.g. an earlier default, for ``benchmarks/paired_pearson.py``.  Records are concatenated and
summarised exactly as `crysplugins evaluate` summarises them (``crysplugins.evaluation.compare.summarise``);
an example that appears twice for one predictor is an error.

    python benchmarks/merge_evaluations.py --out runs/eval_full runs/eval_half0 runs/eval_half1
    python benchmarks/merge_evaluations.py --out runs/eval_vs_old runs/eval_full \\
        runs/eval_pipeline_full::patterson-density::patterson-density@old
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from crysplugins.evaluation import compare


def load(spec: str) -> tuple[list[dict], dict]:
    path, *rename = spec.split("::")
    p = Path(path)
    p = p / "results.json" if p.is_dir() else p
    data = json.loads(p.read_text())
    records = data["records"]
    if rename:
        if len(rename) != 2 or not all(rename):
            raise SystemExit(f"'{spec}': write PATH::OLD::NEW to rename a predictor.")
        old, new = rename
        for r in records:
            if r["predictor"] == old:
                r["predictor"] = new
    return records, data.get("meta", {})


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("inputs", nargs="+", help="run folders or results.json files, each optionally ::OLD::NEW")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    records, metas = [], []
    for spec in args.inputs:
        recs, meta = load(spec)
        records += recs
        metas.append({"input": spec, **meta})
    seen = set()
    for r in records:
        key = (r["predictor"], r["id"])
        if key in seen:
            raise SystemExit(f"{r['id']} appears twice for {r['predictor']}.")
        seen.add(key)
    rows = compare.summarise(records)
    meta = {"merged": metas, "examples": len({r["id"] for r in records}),
            "seconds": round(sum(float(m.get("seconds", 0)) for m in metas), 2)}
    files = compare.write_results(Path(args.out), records, rows, meta)
    print(compare.table_text(rows), end="")
    for row in rows:
        print(f"{row['predictor']}: n {row['n']}, mean Pearson {row['mean_pearson']:.4f}, "
              f"mean phase error {row['mean_phase_error']:.2f}, errors {row['errors']}")
    for kind, path in files.items():
        print(f"wrote {kind}: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
