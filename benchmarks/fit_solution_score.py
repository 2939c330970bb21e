"""Fit and measure the amplitude-only solution score (crysplugins.crystal.solution_score) on held-out fragments.

Step ``collect``: for fragments of ``data_build/fragment_bench`` (``make_fragment_set.py``), every one of
``--starts`` charge-flipping starts (the ``charge-flipping`` predictor's seeds) after density
modification, plus ``patterson-density``'s prediction after DM where its model covers the fragment, is
stored with its amplitude-only features and — for the label only — its origin/hand-invariant phase error
against the true phases (``data_build/solution_score/<cell>/<id>.npz``).  Fragments alternate per cell
(sorted by id): even positions are the development subset, odd ones the report subset.

Step ``fit``: the ``agreement`` feature is recomputed among a fragment's candidates, the logistic model is
fitted on the development subset (label: invariant error < 60°) and written to
``crysplugins/data/solution_score.json`` (with ``--write``); ROC AUCs of every single feature, of the
refiner's CC and of the model are reported per resolution on both subsets (``benchmarks/out/solution_score_auc.json``).

    OMP_NUM_THREADS=1 .venv-test/bin/python benchmarks/fit_solution_score.py collect --per-cell 4
    OMP_NUM_THREADS=1 .venv-test/bin/python benchmarks/fit_solution_score.py fit --write
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
STORE = REPO / "data_build" / "solution_score"
CUTOFF = 60.0


def fragments(per_cell: int, subset: str = "all") -> list[tuple[str, dict]]:
    """(cell folder name, fragments.tsv row) for the first ``per_cell`` fragments of every cell."""
    out = []
    for folder in sorted(BENCH.iterdir()):
        if not (folder / "fragments.tsv").exists():
            continue
        with open(folder / "fragments.tsv", newline="") as fh:
            rows = sorted(csv.DictReader(fh, delimiter="\t"), key=lambda r: r["id"])
        for k, r in enumerate(rows[:per_cell]):
            r["subset"], r["position"] = ("dev" if k % 2 == 0 else "report"), k
            if subset in ("all", r["subset"]):
                out.append((folder.name, r))
    return sorted(out, key=lambda c: c[1]["position"])  # every cell's first fragment, then the second, ...


def network_phases(host, folder: Path, row: dict, hkl: np.ndarray):
    """patterson-density's phases (degrees) at ``hkl``, or None when it does not take this fragment."""
    from crysplugins.errors import CrysError
    from crysplugins.evaluation import compare

    if "patterson-density" not in host.predictors:
        return None
    ex = compare.Example(row["id"], folder / f"{row['id']}_amplitudes.mtz", folder / f"{row['id']}_phases.mtz",
                         row["sequence"], float(row["d_min"]), int(row["n_residues"]))
    try:
        pred, _ = compare.run_one(host, compare.PredictorLabel.parse("patterson-density"), ex)
    except CrysError:
        return None
    cell, _, _, _ = compare.true_data(ex)
    phi, _ = compare.predicted_phases(pred, cell, hkl)
    return None if not np.isfinite(phi).all() else phi


def collect(args: argparse.Namespace) -> None:
    from crysplugins.crystal.origin import search_origin_hand
    from crysplugins.evaluation import compare
    from crysplugins.host import default_host
    from crysplugins.runtime import fragment_phasing as fp

    host = default_host()
    for cell_name, row in fragments(args.per_cell):
        out = STORE / cell_name / f"{row['id']}.npz"
        if out.exists():
            continue
        folder = BENCH / cell_name
        ex = compare.Example(row["id"], folder / f"{row['id']}_amplitudes.mtz", folder / f"{row['id']}_phases.mtz")
        cell, hkl, f, phi_true = compare.true_data(ex)
        setup = fp.make_setup(cell, hkl, f, row["sequence"])
        t0 = time.monotonic()
        cands = [fp.flip_candidate(setup, i) for i in range(args.starts)]
        net = network_phases(host, folder, row, hkl)
        if net is not None:
            cands.append(fp.dm_candidate(setup, net, "network + DM"))
        feats, names, errors = [], [], []
        for c in cands:
            c.features.update(fp.ss.map_features(cell, hkl, f, setup.e_obs, c.refined.phases, setup.n_atoms))
            feats.append([c.refined.score, c.screen_cc, c.features["peak_cc"], c.features["skewness"], c.seconds])
            names.append(c.name)
            errors.append(search_origin_hand(hkl, f, phi_true, c.refined.phases).phase_error)
        out.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(out, hkl=hkl, f=f, e_obs=setup.e_obs, phases=np.array([c.refined.phases for c in cands]),
                            features=np.array(feats), names=np.array(names), errors=np.array(errors),
                            subset=row["subset"], d_min=float(row["d_min"]), n_residues=int(row["n_residues"]))
        print(f"{cell_name} {row['id']} ({row['subset']}): {time.monotonic() - t0:.1f} s, errors "
              + " ".join(f"{e:.0f}" for e in errors), flush=True)


def load_rows(max_candidates: int | None = None) -> list[dict]:
    """One dict per candidate with its features (set features among the fragment's candidates) and label."""
    from crysplugins.crystal import solution_score as ss

    rows = []
    for path in sorted(STORE.glob("*/*.npz")):
        d = np.load(path)
        k = len(d["errors"]) if max_candidates is None else min(max_candidates, len(d["errors"]))
        logs = [ss.dm_log(x[0]) for x in d["features"][:k]]
        extra = ss.set_features(d["hkl"], d["e_obs"], list(d["phases"][:k]), logs)
        for i in range(k):
            x = d["features"][i]
            rows.append({"fragment": path.stem, "cell": path.parent.name, "subset": str(d["subset"]),
                         "d_min": float(d["d_min"]), "n_residues": int(d["n_residues"]), "name": str(d["names"][i]),
                         "dm_cc": x[0], "dm_log": logs[i], "screen_cc": x[1], "peak_cc": x[2], "skewness": x[3],
                         "seconds": x[4], **extra[i], "error": float(d["errors"][i])})
    return rows


def fit(args: argparse.Namespace) -> None:
    from crysplugins.crystal import solution_score as ss

    rows = load_rows(args.max_candidates)
    dev = [r for r in rows if r["subset"] == "dev"]
    y = np.array([r["error"] < CUTOFF for r in dev], dtype=float)
    models = {}
    for key, names in (("single", ss.SINGLE_FEATURES), ("among", ss.SET_FEATURES)):
        x = np.array([[r[k] for k in names] for r in dev])
        models[key] = ss.fit_logistic(x, y, names, l2=args.l2, note=(
            f"fitted on {len(dev)} development candidates ({int(y.sum())} right) of "
            f"{len({r['fragment'] + r['cell'] for r in dev})} fragments by benchmarks/fit_solution_score.py"))
    for r in rows:
        r["model_single"] = models["single"].probability(r)
        r["model_among"] = models["among"].probability(r)
    report: dict = {"models": {k: m.to_json() for k, m in models.items()}, "auc": {}}
    columns = ("model_among", "model_single", "dm_cc", "agreement", "dm_gain", "peak_cc", "skewness", "screen_cc")
    for subset in ("dev", "report"):
        for d_min in sorted({r["d_min"] for r in rows}) + [None]:
            sel = [r for r in rows if r["subset"] == subset and (d_min is None or r["d_min"] == d_min)]
            lab = np.array([r["error"] < CUTOFF for r in sel])
            key = f"{subset} {'all' if d_min is None else f'{d_min:g} A'}"
            report["auc"][key] = {"n": len(sel), "right": int(lab.sum()),
                                  **{k: round(ss.roc_auc(np.array([r[k] for r in sel]), lab), 3) for k in columns}}
            print(key, report["auc"][key], flush=True)
    report["winner_right"] = winner_rates(rows, models)
    print("fraction of fragments whose chosen candidate is right:", report["winner_right"], flush=True)
    out = REPO / "benchmarks" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "solution_score_auc.json").write_text(json.dumps(report, indent=1))
    if args.write:
        ss.COEFFICIENTS.write_text(json.dumps({k: m.to_json() for k, m in models.items()}, indent=1) + "\n")
        print(f"wrote {ss.COEFFICIENTS}")


def winner_rates(rows: list[dict], models: dict) -> dict:
    """Per subset: how often the candidate ranked first is right, by each rule, among the charge-flipping
    starts of every fragment (and how often any start is right)."""
    frags: dict = {}
    for r in rows:
        if r["name"].startswith("charge-flipping start"):
            frags.setdefault((r["subset"], r["cell"], r["fragment"]), []).append(r)
    out: dict = {}
    for subset in ("dev", "report"):
        groups = [rs for (s, _, _), rs in frags.items() if s == subset]
        rules = {"lone model (DM CC)": lambda r: models["single"].probability(r),
                 "model among candidates": lambda r: models["among"].probability(r)}
        out[subset] = {"fragments": len(groups),
                       "any start right": float(np.mean([min(r["error"] for r in rs) < CUTOFF for rs in groups]))}
        for name, key in rules.items():
            out[subset][name] = float(np.mean([max(rs, key=key)["error"] < CUTOFF for rs in groups]))
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("step", choices=("collect", "fit"))
    p.add_argument("--per-cell", type=int, default=4)
    p.add_argument("--starts", type=int, default=8)
    p.add_argument("--max-candidates", type=int, default=None, help="fit: use only the first K candidates")
    p.add_argument("--l2", type=float, default=1.0, help="fit: ridge penalty on the standardised weights")
    p.add_argument("--write", action="store_true", help="fit: write the coefficients into the package")
    args = p.parse_args()
    collect(args) if args.step == "collect" else fit(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
