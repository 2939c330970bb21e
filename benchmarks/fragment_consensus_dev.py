"""Development study of fragment-phasing's consensus candidate, on fragments the benchmark never uses.

Fragments: positions 0 and 2 (the solution score's development fragments) and 27–29 (after the 25 that
``bench_fragments.py`` takes) of each cell of ``data_build/fragment_bench`` (``make_fragment_set.py``).

Step ``collect``: ``fragment_phasing.solve`` without the consensus, every candidate stored with its
origin/hand-invariant phase error against the true phases (the label only) in
``data_build/consensus_dev/<cell>__<id>.npz``.  Step ``evaluate``: for each agreement threshold, the
consensus of the stored candidates (:func:`crysplugins.runtime.fragment_phasing.consensus_candidate`) is
density-modified and joins them; the winner is still the highest DM CC.  Printed and written to
``benchmarks/out/fragment_consensus_dev.json``: mean winner error and successes (< 60°) with and without.

    OMP_NUM_THREADS=1 python benchmarks/fragment_consensus_dev.py collect --part 0 --parts 2   (and --part 1)
    OMP_NUM_THREADS=1 python benchmarks/fragment_consensus_dev.py evaluate --thresholds 60,65,68
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
STORE = REPO / "data_build" / "consensus_dev"
POSITIONS = (0, 2, 27, 28, 29)
SUCCESS = 60.0


def dev_fragments() -> list[tuple[Path, dict]]:
    """(cell folder, fragments.tsv row) of every development position of every cell."""
    out = []
    for pos in POSITIONS:
        for folder in sorted(BENCH.iterdir()):
            if not (folder / "fragments.tsv").exists():
                continue
            with open(folder / "fragments.tsv", newline="") as fh:
                rows = sorted(csv.DictReader(fh, delimiter="\t"), key=lambda r: r["id"])
            if pos < len(rows):
                out.append((folder, rows[pos]))
    return out


def collect(part: int, parts: int) -> None:
    from crysplugins.crystal.origin import search_origin_hand
    from crysplugins.crystal.refine import observed_data
    from crysplugins.evaluation import compare
    from crysplugins.host import default_host
    from crysplugins.plugins.fragment_phasing import FragmentPhasingPredictor
    from crysplugins.runtime import fragment_phasing as fp

    host = default_host()
    STORE.mkdir(parents=True, exist_ok=True)
    for k, (folder, row) in enumerate(dev_fragments()):
        out = STORE / f"{folder.name}__{row['id']}.npz"
        if k % parts != part or out.exists():
            continue
        ex = compare.Example(row["id"], folder / f"{row['id']}_amplitudes.mtz", folder / f"{row['id']}_phases.mtz",
                             row["sequence"], float(row["d_min"]), int(row["n_residues"]))
        _, req = compare.request_for(host, compare.PredictorLabel.parse("fragment-phasing"), ex)
        refl, seq = req.require("mtz"), req.get("sequence")
        cell, hkl, f = observed_data(refl, [])
        _, true_hkl, _, true_phi = compare.true_data(ex)
        truth = dict(zip(map(tuple, true_hkl.tolist()), true_phi.tolist()))
        ref = np.array([truth.get(tuple(h), np.nan) for h in hkl.tolist()])
        setup = fp.make_setup(cell, hkl, f, seq)
        res = fp.solve(setup, lambda: FragmentPhasingPredictor._network_phases(req, refl, seq, hkl, []),
                       consensus=False)
        c = res.candidates
        errors = [search_origin_hand(hkl, f, ref, x.refined.phases).phase_error for x in c]
        np.savez(out, hkl=hkl, f=f, ref=ref, cell=np.array(cell.parameters), sequence=row["sequence"],
                 phases=np.array([x.refined.phases for x in c]), dm_cc=np.array([x.refined.score for x in c]),
                 names=np.array([x.name for x in c]), errors=np.array(errors), best=res.best)
        print(f"{out.stem}: winner {errors[res.best]:.1f} deg, best candidate {min(errors):.1f} deg", flush=True)


def evaluate(thresholds: list[float]) -> dict:
    import gemmi

    from crysplugins.crystal.origin import search_origin_hand
    from crysplugins.runtime import fragment_phasing as fp

    rows = []
    for path in sorted(STORE.glob("*.npz")):
        d = np.load(path)
        if d["dm_cc"].max() >= 0.999:  # solve() makes no consensus when a candidate converged
            continue
        setup = fp.make_setup(gemmi.UnitCell(*d["cell"]), d["hkl"], d["f"], str(d["sequence"]))
        cands = [fp.Candidate(str(n), fp.RefineResult(None, d["hkl"], p, d["f"], np.ones(len(p)), float(s), False),
                              0.0) for n, p, s in zip(d["names"], d["phases"], d["dm_cc"])]
        base = float(d["errors"][int(d["best"])])
        row = {"fragment": path.stem, "without": base, "best_candidate": float(d["errors"].min())}
        for t in thresholds:
            cons = fp.consensus_candidate(setup, cands, agree=t)
            wins = cons is not None and cons.refined.score > d["dm_cc"].max()
            err = search_origin_hand(d["hkl"], d["f"], d["ref"], cons.refined.phases).phase_error if cons else None
            row[f"{t:g}"] = {"members": 0 if cons is None else int(cons.name.split()[2]), "consensus": err,
                             "winner": err if wins else base}
        rows.append(row)
        print(path.stem, f"without {base:.1f}", " ".join(f"{t:g}: {row[f'{t:g}']['winner']:.1f}" for t in thresholds),
              flush=True)
    summary = {"fragments": len(rows), "without": _stats([r["without"] for r in rows], [r["without"] for r in rows]),
               "best_candidate_mean": float(np.mean([r["best_candidate"] for r in rows]))}
    for t in thresholds:
        summary[f"{t:g}"] = _stats([r[f"{t:g}"]["winner"] for r in rows], [r["without"] for r in rows])
    return {"summary": summary, "rows": rows}


def _stats(errors: list[float], base: list[float]) -> dict:
    e, b = np.array(errors), np.array(base)
    return {"mean_error": round(float(e.mean()), 2), "successes": int((e < SUCCESS).sum()),
            "better_by_0.5": int((e < b - 0.5).sum()), "worse_by_0.5": int((e > b + 0.5).sum())}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("step", choices=("collect", "evaluate"))
    p.add_argument("--part", type=int, default=0)
    p.add_argument("--parts", type=int, default=1)
    p.add_argument("--thresholds", default="60,65,68", help="agreement thresholds to try (degrees)")
    args = p.parse_args()
    if args.step == "collect":
        collect(args.part, args.parts)
        return 0
    from figure_output import write_figure

    t0 = time.monotonic()
    result = evaluate([float(x) for x in args.thresholds.split(",")])
    print(json.dumps(result["summary"], indent=1))
    write_figure("fragment_consensus_dev", result, time.monotonic() - t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
