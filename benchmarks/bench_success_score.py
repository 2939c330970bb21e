"""Does the peak-list CC (benchmarks/success_score_candidates.py) tell solved refined maps from unsolved ones?

Reads ``data_build/dipeptide`` (the dipeptide dataset built from ../shared/corpus) and its
recycling template sets ``templates/<name>/{train,test}-*.npz`` written by ``crysplugins dataset
templates``): ``refined`` is the appendix-E template of the prediction after 50 cycles of density
modification, ``score`` the refiner's amplitude CC, ``refined_phase_error`` the stored phase error (raw
refined map, one hand).

Per example:
* observed amplitudes and true phases: ``test_mtz/<id>_phases.mtz`` (F, PHI) for test rows; for train rows
  |F| and φ of the un-normalised dataset density (value·scale + offset, meta.json) to the example's d_min;
* phases of the refined template at those reflections; label "solved" = min(error(φ_ref), error(−φ_ref))
  < 60° (amplitude-weighted mean, crysplugins.crystal.metrics.phase_error): the inverted map (other hand)
  is a correct solution too;
* the refiner's score, peak_cc variants (peaks in the map or its E-map, kind E / E2, B, peak count factor)
  and sayre_cc.

The variant and threshold are chosen on the train rows only (best AUC; threshold of best F1) and then
reported on the test rows.  Usage (from the repository root):

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_success_score.py --data data_build/dipeptide \
        --templates rc_initial --max-train 2000 --out benchmarks/out/success_score
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import gemmi
import numpy as np

from crysplugins.crystal.fourier import FourierGrid
from crysplugins.crystal.metrics import phase_error
from crysplugins.crystal.solution_score import roc_auc
sys.path.insert(0, str(Path(__file__).resolve().parent))
from success_score_candidates import PEAK_B, PEAK_FACTOR, expected_atoms, peak_cc, sayre_cc  # noqa: E402
from crysplugins.datasets.store import open_dataset
from crysplugins.datasets.templates import true_reflections

MAPS = ("map", "emap")  # peaks searched in the refined map as given, or in its E-map
KINDS = ("E", "E2")
B_VALUES = (10.0, 20.0)
PEAK_FACTORS = (0.5, 0.75, 1.0)
MIN_DISTANCE = 1.0


def variant_name(m: str, kind: str, b: float, factor: float) -> str:
    return f"peak_{m}_{kind}_B{b:g}_N{factor:g}"


def precision_recall(score: np.ndarray, label: np.ndarray, threshold: float) -> tuple[float, float, float]:
    flag = np.asarray(score) >= threshold
    label = np.asarray(label, dtype=bool)
    tp = float((flag & label).sum())
    prec = tp / flag.sum() if flag.sum() else float("nan")
    rec = tp / label.sum() if label.sum() else float("nan")
    return prec, rec, float(flag.mean())


def best_f1_threshold(score: np.ndarray, label: np.ndarray) -> float:
    best, best_t = -1.0, float("nan")
    for t in np.unique(score):
        p, r, _ = precision_recall(score, label, t)
        if np.isfinite(p) and p + r > 0:
            f1 = 2 * p * r / (p + r)
            if f1 > best:
                best, best_t = f1, float(t)
    return best_t


def observed(split: str, ident: str, arrays: dict, row: int, norm: dict, data: Path
             ) -> tuple[gemmi.UnitCell, np.ndarray, np.ndarray, np.ndarray]:
    """cell, hkl, |F|, true φ (degrees) of one example."""
    cell = gemmi.UnitCell(*[float(v) for v in arrays["cell"][row]])
    mtz_path = data / "test_mtz" / f"{ident}_phases.mtz"
    if split == "test" and mtz_path.exists():
        mtz = gemmi.read_mtz_file(str(mtz_path))
        hkl = np.asarray(mtz.make_miller_array(), dtype=np.int64)
        f = np.asarray(mtz.column_with_label("F").array, dtype=np.float64)
        phi = np.asarray(mtz.column_with_label("PHI").array, dtype=np.float64)
        ok = np.isfinite(f) & np.isfinite(phi)
        return cell, hkl[ok], f[ok], phi[ok]
    hkl, fc = true_reflections(arrays["density"][row], norm, cell, float(arrays["d_min"][row]))
    keep = np.abs(fc) > 0
    return cell, hkl[keep], np.abs(fc[keep]), np.degrees(np.angle(fc[keep]))


def score_example(refined: np.ndarray, cell: gemmi.UnitCell, hkl: np.ndarray, f_obs: np.ndarray,
                  n_atoms: int) -> dict[str, float]:
    """Every variant of one map, through the functions of benchmarks/success_score_candidates.py."""
    out = {variant_name(m, k, b, f): peak_cc(refined, cell, hkl, f_obs, n_atoms, b_iso=b, kind=k,
                                             peak_factor=f, emap=(m == "emap"), min_distance=MIN_DISTANCE)
           for m, k, b, f in itertools.product(MAPS, KINDS, B_VALUES, PEAK_FACTORS)}
    out["sayre"] = sayre_cc(refined, cell, hkl, f_obs)
    return out


def run_split(data: Path, ds, templates: str, split: str, max_rows: int | None, seq_of: dict) -> dict:
    norm = ds.meta["normalisation"]["density"]
    files = sorted((data / "templates" / templates).glob(f"{split}-*.npz"))
    # deterministic subsample across shards when capped: every k-th row in file order
    entries = []
    for path in files:
        t = np.load(path)
        entries += [(path, i) for i in range(len(t["ids"]))]
    if max_rows is not None and len(entries) > max_rows:
        pick = np.linspace(0, len(entries) - 1, max_rows).round().astype(int)
        entries = [entries[i] for i in pick]
    wanted: dict[Path, list[int]] = {}
    for path, i in entries:
        wanted.setdefault(path, []).append(i)
    rec: dict[str, list] = {"id": [], "old_score": [], "stored_error": [], "error_same": [], "error_inv": [],
                            "n_atoms": []}
    variants: dict[str, list] = {}
    shard_by_name = {s.path.name: s for s in ds.shards(split)}
    t0 = time.monotonic()
    for path, idx in wanted.items():
        t = np.load(path)
        shard = shard_by_name[path.stem + ".npz"]
        arrays = shard.load()
        for i in idx:
            row = int(t["rows"][i])
            ident = str(t["ids"][i])
            if str(arrays["ids"][row]) != ident:
                raise RuntimeError(f"row mismatch {ident} vs {arrays['ids'][row]}")
            cell, hkl, f_obs, phi_true = observed(split, ident, arrays, row, norm, data)
            refined = np.asarray(t["refined"][i], dtype=np.float64)
            fg = FourierGrid(hkl, refined.shape, float(cell.volume))
            phi_ref = np.degrees(np.angle(fg.from_map(refined)[0]))
            n_atoms = expected_atoms(seq_of[ident])
            rec["id"].append(ident)
            rec["old_score"].append(float(t["score"][i]))
            rec["stored_error"].append(float(t["refined_phase_error"][i]))
            rec["error_same"].append(phase_error(hkl, phi_true, phi_ref, f_obs))
            rec["error_inv"].append(phase_error(hkl, phi_true, -phi_ref, f_obs))
            rec["n_atoms"].append(n_atoms)
            for k, v in score_example(refined, cell, hkl, f_obs, n_atoms).items():
                variants.setdefault(k, []).append(v)
    out = {k: np.asarray(v) for k, v in rec.items()}
    out.update({k: np.asarray(v, dtype=np.float64) for k, v in variants.items()})
    out["seconds"] = time.monotonic() - t0
    return out


def precision_threshold(score: np.ndarray, label: np.ndarray, target: float = 0.8, min_flagged: int = 50) -> float:
    """Lowest threshold whose precision is >= ``target`` with at least ``min_flagged`` examples flagged."""
    for t in np.unique(score):
        if (score >= t).sum() < min_flagged:
            break
        if precision_recall(score, label, t)[0] >= target:
            return float(t)
    return float("nan")


def solved_label(res: dict) -> np.ndarray:
    return np.minimum(res["error_same"], res["error_inv"]) < 60.0


def summarise(res: dict, thresholds: dict[str, dict[str, float]]) -> dict:
    """Figures of one set; ``thresholds`` = {score key: {rule: threshold}} fixed on the train rows."""
    solved = solved_label(res)
    stored = res["stored_error"] < 60.0
    same = res["error_same"] < 60.0
    out = {
        "n": int(len(solved)),
        "seconds": round(float(res["seconds"]), 1),
        "fraction_solved": float(solved.mean()),
        "fraction_stored_label": float(stored.mean()),
        "fraction_template_same_hand": float(same.mean()),
        "labels_stored_vs_template_same_hand_disagree": int((stored != same).sum()),
        "solved_only_as_inverse": int((solved & ~same).sum()),
        "auc_size_prior_minus_n_atoms": roc_auc(-res["n_atoms"].astype(float), solved),
        "scores": {},
        "auc_all_variants": {k: roc_auc(res[k], solved) for k in variant_keys()},
    }
    for key, rules in thresholds.items():
        entry = {"auc": roc_auc(res[key], solved), "auc_vs_stored_label": roc_auc(res[key], stored)}
        for rule, t in rules.items():
            p, r, f = precision_recall(res[key], solved, t)
            entry[rule] = {"threshold": t, "precision": p, "recall": r, "flagged": f}
        out["scores"][key] = entry
    return out


def variant_keys() -> list[str]:
    return [variant_name(*v) for v in itertools.product(MAPS, KINDS, B_VALUES, PEAK_FACTORS)] + ["sayre"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="data_build/dipeptide")
    ap.add_argument("--templates", default="rc_initial")
    ap.add_argument("--extra-test", nargs="*", default=[], help="more template sets scored on their test rows "
                    "with the variant and threshold chosen on --templates train rows")
    ap.add_argument("--max-train", type=int, default=2000)
    ap.add_argument("--max-test", type=int, default=None)
    ap.add_argument("--out", default=None, help="folder for per-example arrays and summary.json")
    args = ap.parse_args(argv)
    data = Path(args.data)
    ds = open_dataset(data)
    seq_of = {r["id"]: r["sequence"] for r in ds.index}
    train = run_split(data, ds, args.templates, "train", args.max_train, seq_of)
    solved_train = solved_label(train)
    aucs = {k: roc_auc(train[k], solved_train) for k in variant_keys()}
    chosen = max(aucs, key=lambda k: aucs[k])
    default_peak = variant_name("emap", "E", PEAK_B, PEAK_FACTOR)  # what peak_cc() does with its defaults
    thresholds: dict[str, dict[str, float]] = {"old_score": {"refiner_0.99": 0.99}}
    for key in dict.fromkeys(["old_score", chosen, default_peak]):
        thresholds.setdefault(key, {})
        thresholds[key]["best_f1_on_train"] = best_f1_threshold(train[key], solved_train)
        thresholds[key]["precision_0.8_on_train"] = precision_threshold(train[key], solved_train)
    summary = {"templates": args.templates, "chosen_on_train": chosen, "default_peak_cc": default_peak,
               "thresholds_on_train": thresholds, "train": summarise(train, thresholds)}
    results = {"train": train}
    test = run_split(data, ds, args.templates, "test", args.max_test, seq_of)
    summary["test"] = summarise(test, thresholds)
    results["test"] = test
    for name in args.extra_test:
        res = run_split(data, ds, name, "test", args.max_test, seq_of)
        summary[f"{name}:test"] = summarise(res, thresholds)
        results[f"{name}:test"] = res
    print(json.dumps(summary, indent=1, default=float))
    print(f"\nchosen on train (best AUC): {chosen}; peak_cc defaults: {default_peak}")
    print("set | n | solved (either hand) | solved (stored label) | AUC of -n_atoms")
    sets = [k for k in summary if isinstance(summary[k], dict) and "n" in summary[k]]
    for key in sets:
        s = summary[key]
        print(f"{key} | {s['n']} | {s['fraction_solved']:.3f} | {s['fraction_stored_label']:.3f} | "
              f"{s['auc_size_prior_minus_n_atoms']:.3f}")
    print("set | score | AUC | AUC vs stored label | rule: threshold P/R/flagged ...")
    for key in sets:
        for name, e in summary[key]["scores"].items():
            rules = "; ".join(f"{r}: {v['threshold']:.4f} {v['precision']:.2f}/{v['recall']:.2f}/{v['flagged']:.2f}"
                              for r, v in e.items() if isinstance(v, dict))
            print(f"{key} | {name} | {e['auc']:.3f} | {e['auc_vs_stored_label']:.3f} | {rules}")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        for key, res in results.items():
            np.savez_compressed(out / f"{key.replace(':', '_')}.npz", **{k: v for k, v in res.items()})
        (out / "summary.json").write_text(json.dumps(summary, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
