"""Development study of fragment-phasing's stopping CC, on fragments the benchmark never uses.

The candidates stored by ``benchmarks/fragment_consensus_dev.py collect`` (positions 0, 2 and 27–29 of every
cell of ``data_build/fragment_bench``, in the order ``fragment_phasing.solve`` makes them, each with its DM CC
and, for the label only, its origin/hand-invariant phase error) are replayed with a stopping CC: the search
ends at the first candidate whose DM CC reaches it, and the winner is the highest DM CC made so far.  Printed
and written to ``benchmarks/out/fragment_stop_dev.json``, per resolution: the highest DM CC of a wrong
candidate (error ≥ 60°), and for each threshold the candidates made (against all stored), the successes lost
against the full set and the mean change of the winner's error (degrees).

    .venv-test/bin/python benchmarks/fragment_stop_dev.py --thresholds 0.965,0.97,0.975,0.98,0.985
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
STORE = REPO / "data_build" / "consensus_dev"
OUT = REPO / "benchmarks" / "out" / "fragment_stop_dev.json"
SUCCESS = 60.0


def load() -> dict[float, list[dict]]:
    """Stored development fragments by resolution (Å): DM CCs and errors of their candidates, in order."""
    by_res: dict[float, list[dict]] = {}
    for path in sorted(STORE.glob("*.npz")):
        cell = path.name.split("__")[0]  # e.g. 10res_2.25A
        z = np.load(path)
        d_min = float(cell.split("_")[1].rstrip("A"))
        by_res.setdefault(d_min, []).append({"id": path.stem, "cc": z["dm_cc"], "err": z["errors"]})
    return by_res


def replay(frag: dict, threshold: float) -> tuple[int, float, float]:
    """(candidates made, winner error, full-set winner error) when the search stops at ``threshold``."""
    cc, err = frag["cc"], frag["err"]
    made = next((i + 1 for i in range(len(cc)) if cc[i] >= threshold), len(cc))
    return made, float(err[int(np.argmax(cc[:made]))]), float(err[int(np.argmax(cc))])


def study(frags: list[dict], thresholds: list[float]) -> dict:
    """Wrong-candidate CC range and, per threshold, candidates made, successes lost, mean error change."""
    cc = np.concatenate([f["cc"] for f in frags])
    wrong = np.concatenate([f["err"] for f in frags]) >= SUCCESS
    out = {"fragments": len(frags), "candidates": int(len(cc)), "wrong": int(wrong.sum()),
           "highest_wrong_cc": round(float(cc[wrong].max()), 4) if wrong.any() else None,
           "lowest_right_cc": round(float(cc[~wrong].min()), 4) if (~wrong).any() else None, "thresholds": {}}
    for t in thresholds:
        runs = [replay(f, t) for f in frags]
        out["thresholds"][str(t)] = {
            "made": int(sum(r[0] for r in runs)),
            "lost": int(sum(r[2] < SUCCESS <= r[1] for r in runs)),
            "gained": int(sum(r[1] < SUCCESS <= r[2] for r in runs)),
            "mean_error_change": round(float(np.mean([r[1] - r[2] for r in runs])), 2)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--thresholds", default="0.965,0.97,0.975,0.98,0.985,0.999")
    args = ap.parse_args()
    thresholds = [float(t) for t in args.thresholds.split(",")]
    result = {f"{d:g}": study(frags, thresholds) for d, frags in sorted(load().items())}
    low = [f for d, frags in load().items() if d >= 1.75 for f in frags]
    result["2.0-2.5"] = study(low, thresholds)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=1) + "\n")
    for res, r in result.items():
        print(f"{res} Å: {r['fragments']} fragments, {r['candidates']} candidates ({r['wrong']} wrong), "
              f"highest wrong CC {r['highest_wrong_cc']}, lowest right CC {r['lowest_right_cc']}")
        for t, x in r["thresholds"].items():
            print(f"   stop at {t}: {x['made']} made, {x['lost']} successes lost, {x['gained']} gained, "
                  f"mean error change {x['mean_error_change']:+.2f}°")


if __name__ == "__main__":
    main()
