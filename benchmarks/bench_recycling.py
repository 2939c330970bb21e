"""Recycling benchmark in the form of table 1 of the RecCrysFormer paper (000, section 5).

Reads a dataset built from ../shared/corpus (default ``data_build/dipeptide``, made by
``crysplugins dataset build --structures ../shared/corpus/structures --residues 2 ...``) and an *initial*
training run (``crysplugins train reccrysformer ...``), then runs, as real CLI commands (printed, logged in
OUT/commands.log, each skipped when its output already exists, so the script can be rerun to resume):

1. ``crysplugins dataset templates INITIAL`` -> template set ``rc_initial`` (predict + refine + appendix E)
   on a fraction of the train shards and of the test shards;
2. ``crysplugins train reccrysformer --recycle-from INITIAL`` twice: "Recycling" (refined template with
   probability 0.7, no template noise, no weight transfer: the paper's first formulation) and
   "Recycling (modified)" (1/6, noise 0.05 on the template channel, transfer + noise), each for
   ``--minutes`` minutes on CPU, learning rates of appendix G for recycling (2.5e-4 -> 8e-4);
3. ``crysplugins dataset templates`` of each recycled model on the same test rows (input templates: the
   refined template wherever the example was refined after the initial run, else the initial prediction),
   which records each prediction's Pearson, phase error and whether it refines;
4. the table: mean Pearson (eq. 7) and amplitude-weighted mean phase error (degrees, prediction vs true
   phases, no origin search: maps are centred on the centre of mass) over the test rows, the same over
   the rows *not* refined after the initial run, and the percent refined; plus the mean-training-map
   baseline Pearson (mean of the first train shard of each grid shape) on the same rows.

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_recycling.py --data data_build/dipeptide \
        --initial runs/dipeptide_v1 --out runs/recycling --minutes 15

Writes OUT/table.md and OUT/table.json (the recycling figure of BENCHMARKS.md).
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import gemmi
import numpy as np

from crysplugins.crystal.maps import invert_grid
from crysplugins.crystal.metrics import pearson, phase_error
from crysplugins.datasets.store import open_dataset
from crysplugins.datasets.templates import map_phases, true_reflections
from crysplugins.runtime.hand import hand_input, hand_logits
from crysplugins.runtime.models import find_card
from crysplugins.training.hand_chirality import refined_map

REPO = Path(__file__).resolve().parents[1]


def run(cmd: list[str], log: Path) -> None:
    line = " ".join(shlex.quote(c) for c in cmd)
    print(f"$ {line}", flush=True)
    with open(log, "a") as fh:
        fh.write(f"# {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}\n{line}\n")
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=REPO, env=dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1")))
    with open(log, "a") as fh:
        fh.write(f"# exit {proc.returncode} after {time.monotonic() - t0:.0f} s\n")
    if proc.returncode != 0:
        sys.exit(f"command failed ({proc.returncode}): {line}")


def run_parallel(cmds: list[list[str]], log: Path) -> None:
    """Run commands at the same time (the two recycling runs share the CPU equally)."""
    procs = []
    for cmd in cmds:
        line = " ".join(shlex.quote(c) for c in cmd)
        print(f"$ {line} &", flush=True)
        with open(log, "a") as fh:
            fh.write(f"# {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())} (in parallel)\n{line}\n")
        procs.append((line, subprocess.Popen(cmd, cwd=REPO)))
    for line, p in procs:
        if p.wait() != 0:
            sys.exit(f"command failed ({p.returncode}): {line}")


def make_zero_templates(data: Path, tag: str = "rc") -> None:
    """Template set <tag>_zero: the rows of <tag>_initial with all-zero templates, nothing refined (control)."""
    src, dst = data / "templates" / f"{tag}_initial", data / "templates" / f"{tag}_zero"
    if (dst / "info.json").exists():
        return
    dst.mkdir(parents=True, exist_ok=True)
    for p in sorted(src.glob("*.npz")):
        with np.load(p, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        for k in ("prediction", "refined", "is_refined"):
            arrays[k] = np.zeros_like(arrays[k])
        np.savez(dst / p.name, **arrays)
    info = json.loads((src / "info.json").read_text())
    info["note"] = "control: rc_initial rows with all-zero templates (no template information)"
    (dst / "info.json").write_text(json.dumps(info, indent=1))


def load_set(data: Path, name: str, split: str = "test") -> dict[str, dict[str, float]]:
    """id -> {pearson, phase_error, is_refined, ...} of a template set's split."""
    out: dict[str, dict[str, float]] = {}
    for path in sorted((data / "templates" / name).glob(f"{split}-*.npz")):
        with np.load(path, allow_pickle=False) as z:
            for i, ex in enumerate(z["ids"]):
                out[str(ex)] = {k: float(z[k][i]) for k in ("pearson", "phase_error", "is_refined", "score",
                                                            "refined_pearson", "refined_phase_error")}
                out[str(ex)]["refiner_refined"] = float(z["refiner_refined"][i]) if "refiner_refined" in z.files \
                    else out[str(ex)]["is_refined"]
    return out


def baseline(data: Path, ids: set[str]) -> float:
    """Mean Pearson of the mean training density (first train shard of each shape) with the test maps."""

    ds = open_dataset(data)
    means = {}
    for shard in ds.shards("train"):
        if shard.shape not in means:
            means[shard.shape] = shard.load()["density"].astype(np.float32).mean(axis=0)
    pcs = []
    for shard in ds.shards("test"):
        if shard.shape not in means:
            continue
        arr = shard.load()
        for i, ex in enumerate(arr["ids"]):
            if str(ex) in ids:
                pcs.append(pearson(means[shard.shape], arr["density"][i].astype(np.float32)))
    return float(np.mean(pcs)) if pcs else float("nan")


def better_hand(data: Path, name: str, ids: set[str]) -> tuple[float, float]:
    """(mean Pearson of each stored prediction with the better hand of the truth, mean Pearson of the
    average of the prediction's two hands with the truth) over ``ids``: diagnostics for the hand question
    (a Patterson map cannot fix the hand; docs/lab-notes/reccrysformer.md, "The hand ceiling, measured")."""

    truth = {}
    for shard in open_dataset(data).shards("test"):
        arr = shard.load()
        for i, ex in enumerate(arr["ids"]):
            if str(ex) in ids:
                truth[str(ex)] = arr["density"][i].astype(np.float64)
    best, avg = [], []
    for path in sorted((data / "templates" / name).glob("test-*.npz")):
        with np.load(path, allow_pickle=False) as z:
            for ex, pred in zip(z["ids"], z["prediction"]):
                if str(ex) in truth:
                    t, p = truth[str(ex)], pred.astype(np.float64)
                    best.append(max(pearson(p, t), pearson(invert_grid(p), t)))
                    avg.append(pearson(0.5 * (p + invert_grid(p)), t))
    return (float(np.mean(best)), float(np.mean(avg))) if best else (float("nan"), float("nan"))


def hand_chosen(data: Path, name: str, ids: set[str], hand_model: str) -> dict[str, dict[str, float]]:
    """id -> {pearson, phase_error, inverted, logit} of a template set's test predictions after the hand model
    (``crysplugins.runtime.hand``) has put each on the L hand.  The decision uses the prediction, or for an
    ``input: refined`` hand model its density-modified map (against the example's amplitudes, as the plugin's
    last recycling cycle does); the Pearson (eq. 7) and the amplitude-weighted phase error are then measured
    against the truth."""

    ds = open_dataset(data)
    norm = ds.meta["normalisation"]["density"]
    reads_refined = hand_input({"hand_model": hand_model}) == "refined"
    cycles = 50
    if reads_refined:
        cycles = int(((find_card(hand_model).get("training") or {}).get("refinement") or {}).get("cycles", 50))
    types = ds.meta.get("residue_types", "ACDEFGHIKLMNPQRSTVWY")
    out: dict[str, dict[str, float]] = {}
    for shard in ds.shards("test"):
        path = data / "templates" / name / f"{shard.path.stem}.npz"
        if not path.exists():
            continue
        arr = shard.load()
        with np.load(path, allow_pickle=False) as z:
            rows, exs, preds = z["rows"], z["ids"], z["prediction"].astype(np.float32)
        keep = [k for k, ex in enumerate(exs) if str(ex) in ids]
        if not keep:
            continue
        read = preds[keep]
        if reads_refined:  # the hand model reads the density-modified map of each prediction (as the plugin does)
            read = np.stack([refined_map(preds[k], arr["density"][int(rows[k])].astype(np.float64), norm,
                                         arr["cell"][int(rows[k])], float(arr["d_min"][int(rows[k])]),
                                         "".join(types[i] for i in arr["sequence_index"][int(rows[k])]), cycles)
                             for k in keep])
        logits = hand_logits(read, hand_model, cells=arr["cell"][rows[keep]])
        for k, lg in zip(keep, logits):
            r = int(rows[k])
            p = invert_grid(preds[k]) if lg > 0 else preds[k]
            truth = arr["density"][r].astype(np.float64)
            cell = gemmi.UnitCell(*[float(v) for v in arr["cell"][r]])
            hkl, f_true = true_reflections(truth, norm, cell, float(arr["d_min"][r]))
            phi = map_phases(p, cell, float(arr["d_min"][r]), hkl)
            out[str(exs[k])] = {"pearson": pearson(p, truth), "inverted": float(lg > 0), "logit": float(lg),
                                "phase_error": phase_error(hkl, np.degrees(np.angle(f_true)), phi, np.abs(f_true))}
    return out


def run_info(run_dir: Path) -> str:
    s = run_dir / "summary.json"
    if not s.exists():
        return "?"
    d = json.loads(s.read_text())
    st = d.get("state", {})
    return f"{st.get('epoch', '?')} epochs + {st.get('batch', 0)} batches, {d.get('minutes', '?')} min"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="data_build/dipeptide")
    ap.add_argument("--initial", required=True, help="the initial training run folder")
    ap.add_argument("--out", default="runs/recycling")
    ap.add_argument("--fraction", type=float, default=0.1, help="fraction of each train shard given templates")
    ap.add_argument("--test-fraction", type=float, default=0.25, help="fraction of each test shard evaluated")
    ap.add_argument("--cycles", type=int, default=50, help="density-modification cycles per example")
    ap.add_argument("--minutes", type=float, default=15.0, help="CPU minutes per recycling training run")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--workers", type=int, default=1, help="refinement processes for the template sets")
    ap.add_argument("--refined-rule", choices=("refiner", "phase-error"), default="refiner",
                    help="what counts as refined (see crysplugins dataset templates --help)")
    ap.add_argument("--parallel", action="store_true", help="run the two recycling trainings at the same time")
    ap.add_argument("--control", action="store_true",
                    help="also a control run: the initial weights trained on the same rows for the same number of "
                         "steps with an all-zero template (template set rc_zero): how much is just more training")
    ap.add_argument("--control-steps", type=int, default=525, help="optimizer steps of the control run")
    ap.add_argument("--tag", default="rc", help="prefix of the template set names in DATA/templates/ (default rc)")
    ap.add_argument("--only-table", action="store_true", help="just recompute the table from existing outputs")
    ap.add_argument("--hand-model", metavar="NAME",
                    help="also report each column with the hand chosen by this hand model (crysplugins.runtime.hand)")
    ap.add_argument("--extra", action="append", default=[], metavar="NAME=LABEL=RUN_DIR",
                    help="another template set <tag>_NAME of a recycled run made outside this script, as a column")
    args = ap.parse_args()
    data, initial, out = Path(args.data), Path(args.initial), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "commands.log"
    cli = [sys.executable, "-m", "crysplugins.cli"]
    common_t = ["--cycles", str(args.cycles), "--test-fraction", str(args.test_fraction), "--threads",
                str(args.threads), "--workers", str(args.workers), "--refined-rule", args.refined_rule, "--quiet"]
    runs = {"recycling": ["--refined-prob", "0.7", "--template-noise", "0", "--no-transfer"],
            "recycling_modified": ["--refined-prob", "1/6", "--template-noise", "0.05"]}
    if not args.only_table:
        run(cli + ["dataset", "templates", str(initial), "--data", str(data), "--name", f"{args.tag}_initial",
                   "--fraction", str(args.fraction)] + common_t, log)
        train_cmds = []
        for name, opts in runs.items():
            rdir = out / name
            if not (rdir / "summary.json").exists():
                train_cmds.append(cli + [
                    "train", "reccrysformer", "--config", str(initial / "config.json"), "--data", str(data),
                    "--out", str(rdir), "--recycle-from", str(initial), "--templates", f"{args.tag}_initial",
                    "--max-minutes", str(args.minutes), "--set", "train.max_steps=null",
                    "--set", "train.epochs=1000", "--set", "train.eval_every_steps=null", "--lr", "2.5e-4",
                    "--max-lr", "8e-4", "--threads", str(args.threads), "--quiet"] + opts + (
                        ["--resume"] if (rdir / "checkpoint.pt").exists() else []))
        if args.parallel and len(train_cmds) > 1:
            run_parallel(train_cmds, log)
        else:
            for cmd in train_cmds:
                run(cmd, log)
        for name in runs:
            rdir = out / name
            run(cli + ["dataset", "templates", str(rdir), "--data", str(data), "--name", f"{args.tag}_{name}",
                       "--splits", "test", "--input-templates", f"{args.tag}_initial", "--fraction", str(args.fraction)]
                + common_t, log)

        if args.control:
            make_zero_templates(data, args.tag)
            cdir = out / "control_zero_template"
            if not (cdir / "summary.json").exists():
                run(cli + ["train", "reccrysformer", "--config", str(initial / "config.json"), "--data", str(data),
                           "--out", str(cdir), "--recycle-from", str(initial), "--templates", f"{args.tag}_zero",
                           "--max-minutes", str(args.minutes), "--max-steps", str(args.control_steps),
                           "--set", "train.epochs=1000", "--set", "train.eval_every_steps=null", "--lr", "2.5e-4",
                           "--max-lr", "8e-4", "--threads", str(args.threads), "--quiet", "--refined-prob", "0",
                           "--template-noise", "0"], log)
            run(cli + ["dataset", "templates", str(cdir), "--data", str(data), "--name", f"{args.tag}_control",
                       "--splits", "test", "--input-templates", f"{args.tag}_zero", "--fraction", str(args.fraction)]
                + common_t, log)

    sets = {"Initial": load_set(data, f"{args.tag}_initial")}
    for name, label in (("control", "Control: +training, zero template"), ("recycling", "Recycling"),
                        ("recycling_modified", "Recycling (modified)")):
        s = load_set(data, f"{args.tag}_{name}")
        if s:
            sets[label] = s
    extra_dirs = {}
    for item in args.extra:
        name, label, rdir = item.split("=", 2)
        s = load_set(data, f"{args.tag}_{name}")
        if s:
            sets[label] = s
            extra_dirs[label] = Path(rdir)
    ids = set(sets["Initial"])
    for s in sets.values():
        ids &= set(s)
    not_ref = {i for i in ids if not sets["Initial"][i]["is_refined"]}

    def mean(s, key, subset):
        v = [s[i][key] for i in subset]
        return float(np.mean(v)) if v else float("nan")

    rows = {label: {"mean_pearson": mean(s, "pearson", ids), "mean_pearson_not_refined": mean(s, "pearson", not_ref),
                    "mean_phase_error": mean(s, "phase_error", ids),
                    "mean_phase_error_not_refined": mean(s, "phase_error", not_ref),
                    "percent_refined": 100 * mean(s, "is_refined", ids),
                    "percent_refiner_flag": 100 * mean(s, "refiner_refined", ids),
                    "percent_solved": 100 * float(np.mean([s[i]["refined_phase_error"] < 60 for i in ids])),
                    "mean_refined_phase_error": mean(s, "refined_phase_error", ids)} for label, s in sets.items()}
    set_names = {"Initial": f"{args.tag}_initial", "Control: +training, zero template": f"{args.tag}_control",
                 "Recycling": f"{args.tag}_recycling", "Recycling (modified)": f"{args.tag}_recycling_modified",
                 **{label: f"{args.tag}_{item.split('=', 2)[0]}" for item in args.extra
                    for label in [item.split("=", 2)[1]]}}
    for label in rows:
        rows[label]["mean_pearson_better_hand"], rows[label]["mean_pearson_two_hand_average"] = \
            better_hand(data, set_names[label], ids)
    if args.hand_model:
        for label in rows:
            hc = hand_chosen(data, set_names[label], ids, args.hand_model)
            rows[label]["hand_pearson"] = mean(hc, "pearson", ids)
            rows[label]["hand_pearson_not_refined"] = mean(hc, "pearson", not_ref)
            rows[label]["hand_phase_error"] = mean(hc, "phase_error", ids)
            rows[label]["hand_phase_error_not_refined"] = mean(hc, "phase_error", not_ref)
            rows[label]["hand_percent_inverted"] = 100 * mean(hc, "inverted", ids)
            # paired difference from the initial model as predicted, with a bootstrap 95 % interval
            order = sorted(ids)
            delta = np.array([hc[i]["pearson"] - sets["Initial"][i]["pearson"] for i in order])
            boot = np.random.default_rng(0).choice(delta, size=(2000, len(delta))).mean(axis=1)
            rows[label]["hand_pearson_delta_vs_initial"] = float(delta.mean())
            rows[label]["hand_pearson_delta_ci95"] = [float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))]
    base = baseline(data, ids)
    runs_dirs = {"Initial": initial, "Recycling": out / "recycling", "Recycling (modified)": out / "recycling_modified",
                 "Control: +training, zero template": out / "control_zero_template", **extra_dirs}
    labels = list(rows)
    lines = ["| Metric | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]
    spec = [("Mean PC(e, e')", "mean_pearson", "{:.3f}"), ("Mean PC(e, e') (not refined)", "mean_pearson_not_refined", "{:.3f}"),
            ("Mean PC with the better hand of the truth (diagnostic)", "mean_pearson_better_hand", "{:.3f}"),
            ("Mean PC of the prediction's two-hand average (diagnostic)", "mean_pearson_two_hand_average", "{:.3f}"),
            ("Mean phase error", "mean_phase_error", "{:.1f}°"),
            ("Mean phase error (not refined)", "mean_phase_error_not_refined", "{:.1f}°"),
            (f"Percent refined (rule: {args.refined_rule})", "percent_refined", "{:.0f}"),
            ("Percent with the refiner's flag (CC >= threshold)", "percent_refiner_flag", "{:.0f}"),
            ("Percent within 60° of the truth after refinement", "percent_solved", "{:.0f}"),
            ("Mean phase error after refinement", "mean_refined_phase_error", "{:.1f}°")]
    if args.hand_model:
        spec += [(f"Mean PC(e, e'), hand chosen by {args.hand_model}", "hand_pearson", "{:.3f}"),
                 ("Mean PC(e, e') (not refined), hand chosen", "hand_pearson_not_refined", "{:.3f}"),
                 ("Mean phase error, hand chosen", "hand_phase_error", "{:.1f}°"),
                 ("Mean phase error (not refined), hand chosen", "hand_phase_error_not_refined", "{:.1f}°"),
                 ("Percent inverted by the hand model", "hand_percent_inverted", "{:.0f}"),
                 ("Hand-chosen PC minus the initial model's PC, per example (mean)", "hand_pearson_delta_vs_initial",
                  "{:+.3f}")]
    for title, key, fmt in spec:
        lines.append(f"| {title} | " + " | ".join(fmt.format(rows[l][key]) for l in labels) + " |")
    if args.hand_model:
        lines.append("| (bootstrap 95 % interval of that mean) | " + " | ".join(
            "[{:+.3f}, {:+.3f}]".format(*rows[l]["hand_pearson_delta_ci95"]) for l in labels) + " |")
    lines.append("| Training | " + " | ".join(run_info(runs_dirs[l]) for l in labels) + " |")
    text = "\n".join(lines) + (f"\n\nTest examples: {len(ids)} ({len(not_ref)} not refined after the initial run). "
                               f"Mean-training-map baseline Pearson on them: {base:.3f}.\n")
    print(text)
    (out / "table.md").write_text(text)
    (out / "table.json").write_text(json.dumps({"rows": rows, "n": len(ids), "n_not_refined": len(not_ref),
                                                "baseline_pearson": base}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
