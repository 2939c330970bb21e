"""Benchmark: the fragment hand model on held-out maps — true, phase-degraded and real pipeline outputs.

A Patterson map and the amplitudes are the same for a fragment and its inverse; only the L-amino acids in a
solved map tell the hand.  This measures the shipped ``hand-chirality`` card (default ``fragment_hand``)
through the runtime (:func:`crysplugins.runtime.hand.hand_logits`), on the test families only:

* (a, b) every ``--test-every``-th test example of ``--data`` (2–15 residues, 1.5–2.5 Å): its true density
  to its d_min, and the same with von Mises phase errors of mean 20° and 35°
  (:func:`crysplugins.training.hand_chirality.degraded_map`); right = the call keeps the true (L) map.
  By length and d_min bin, with the time per call.
* (c) real outputs: the shipped ``demo`` example through ``patterson-density`` (default options), the
  dipeptides at 1.5 Å of ``data_build/fragment_bench`` through ``patterson-density`` (the dipeptide model;
  it refuses cells over 32 grid points an axis) and ``--per-cell``
  fragments of every cell through ``charge-flipping`` (the winner ``fragment-phasing`` places when the
  transformer did not run).  The truth: the origin/hand search of the output's phases against the true
  phases; right = the call inverts exactly the maps on the wrong hand.  Counted on solved maps only
  (invariant phase error < 60°): on an unsolved map neither hand is right.  Output maps are cached in
  ``benchmarks/out/hand/`` (resumable).  ``--baseline`` (default: the dipeptide pipeline's hand card) is scored on
  the same output maps.

    OMP_NUM_THREADS=1 python benchmarks/bench_hand.py [--model fragment_hand] [--test-every 6] [--per-cell 3] \
        [--baseline CARD] [--figure hand]
"""
from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np

from crysplugins.crystal.fourier import FourierGrid
from crysplugins.crystal.origin import search_origin_hand
from crysplugins.datasets.store import open_dataset
from crysplugins.errors import CrysError
from crysplugins.evaluation.compare import Example, PredictorLabel, run_one, true_data
from crysplugins.examples import EXAMPLES
from crysplugins.host import default_host
from crysplugins.runtime.fragment_phasing import SURE_HAND
from crysplugins.runtime.hand import hand_confidence, hand_logits
from crysplugins.training.hand_chirality import degraded_map, stratified_accuracy
from figure_output import OUT, REPO, write_figure

BENCH = REPO / "data_build" / "fragment_bench"
CACHE = OUT / "hand"
ERRORS = (0.0, 20.0, 35.0)


def simulated(model: str, data: str, every: int, seed: int = 0) -> dict:
    """(a, b): accuracy on true and phase-degraded test maps, stratified, and the time per call (s)."""
    ds = open_dataset(data)
    rng = np.random.default_rng(seed)
    scores, lengths, d_mins, seconds = [], [], [], []
    for shard in ds.shards("test"):
        arrays = shard.load()
        for row in range(0, shard.n, every):
            cell, d_min = arrays["cell"][row], float(arrays["d_min"][row])
            sequence = ds.sequences(arrays["sequence_index"][row:row + 1])
            one = []
            for err in ERRORS:
                m = degraded_map(arrays["density"][row], cell, d_min, err, rng)
                t0 = time.perf_counter()
                one.append(-float(hand_logits(m[None], model, cells=[cell], sequences=sequence)[0]))
                seconds.append(time.perf_counter() - t0)
            scores.append(one)
            lengths.append(int((arrays["sequence_index"][row] >= 0).sum()))
            d_mins.append(d_min)
    s, n_res, d = np.array(scores), np.array(lengths), np.array(d_mins)
    out = {f"phase_error_{e:g}": {**stratified_accuracy(s[:, j], n_res, d), **confident(s[:, j] > 0, s[:, j])}
           for j, e in enumerate(ERRORS)}
    out["seconds_per_call"] = {"median": float(np.median(seconds)), "max": float(np.max(seconds))}
    return out


def confident(right: np.ndarray, logits: np.ndarray) -> dict:
    """Share of calls at confidence >= SURE_HAND (fragment-phasing's "sure" calls) and their accuracy."""
    sure = np.array([hand_confidence(x) >= SURE_HAND for x in logits], bool)
    return {"sure_fraction": float(sure.mean()) if len(sure) else None,
            "sure_accuracy": float(np.asarray(right)[sure].mean()) if sure.any() else None}


def bench_examples(per_cell: int, only: str | None = None) -> list[Example]:
    """``per_cell`` fragments of each fragment_bench cell (the solution score's development positions 0 and 2
    left out, as in bench_fragments.py)."""
    out = []
    for folder in sorted(p for p in BENCH.iterdir() if (p / "fragments.tsv").exists()):
        if only and folder.name != only:
            continue
        with open(folder / "fragments.tsv", newline="") as fh:
            rows = sorted(csv.DictReader(fh, delimiter="\t"), key=lambda r: r["id"])
        rows = [r for k, r in enumerate(rows) if k not in (0, 2)][:per_cell]
        out += [Example(r["id"], folder / f"{r['id']}_amplitudes.mtz", folder / f"{r['id']}_phases.mtz",
                        r["sequence"], float(r["d_min"]), int(r["n_residues"])) for r in rows]
    return out


def demo_example() -> Example:
    info = json.loads((EXAMPLES / "patterson_density" / "example.json").read_text())
    root = Path(str(EXAMPLES / "patterson_density"))
    return Example(info["id"], root / info["amplitudes"], root / info["phases"], info["sequence"], 1.5, 2)


def output_map(host, label: PredictorLabel, ex: Example, cache_dir: Path | None = None) -> dict:
    """The predictor's output map for ``ex`` with its truth: map, cell, wrong hand?, phase error, the model and
    hand model that made it.  Cached in ``cache_dir`` (default: for charge flipping only, in CACHE: its output
    does not depend on any hand model; patterson-density's does)."""
    if cache_dir is None and label.name == "charge-flipping":
        cache_dir = CACHE
    path = None if cache_dir is None else cache_dir / f"{label.label.replace(':', '_').replace('=', '-')}__{ex.id}_{ex.d_min:g}.npz"
    if path is not None and path.exists():
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    prediction, seconds = run_one(host, label, ex)
    cmap = prediction.maps["density"]
    rho = np.asarray(cmap.array, dtype=np.float64)
    cell, hkl, f, phi = true_data(ex)
    f_map, _ = FourierGrid(hkl, rho.shape, float(cell.volume)).from_map(rho)
    fit = search_origin_hand(hkl, f, phi, np.degrees(np.angle(f_map)))
    rec = {"map": rho.astype(np.float32), "cell": np.array(cmap.cell.parameters), "wrong_hand": fit.inverted,
           "phase_error": fit.phase_error, "seconds": seconds, "model": str(prediction.meta.get("model", "")),
           "pipeline_hand_model": str(prediction.meta.get("hand_model", "")),
           "pipeline_inverted": bool(prediction.meta.get("hand_inverted", False))}
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, **rec)
    return rec


def pipeline(model: str, label: str, examples: list[Example], host, baseline: str | None = None) -> dict:
    """(c): the hand model's call on each output map against its truth; accuracy on the solved ones (and that
    of the ``baseline`` hand model on the same maps).  Examples the predictor refuses are counted, not scored."""
    lab = PredictorLabel.parse(label)
    rows, refused = [], []
    for ex in examples:
        try:
            rec = output_map(host, lab, ex)
        except CrysError as exc:
            refused.append(f"{ex.id}: {exc}")
            continue
        logit = float(hand_logits(rec["map"][None], model, cells=[rec["cell"]], sequences=[ex.sequence])[0])
        if baseline:
            base = float(hand_logits(rec["map"][None], baseline, cells=[rec["cell"]], sequences=[ex.sequence])[0])
            rows_extra = {"baseline_right": (base > 0) == bool(rec["wrong_hand"])}
        else:
            rows_extra = {}
        rows.append({"id": ex.id, "n_residues": ex.n_residues, "d_min": ex.d_min,
                     "phase_error": round(float(rec["phase_error"]), 2), "solved": bool(rec["phase_error"] < 60),
                     "output_on_wrong_hand": bool(rec["wrong_hand"]), "call_inverts": logit > 0,
                     "right": (logit > 0) == bool(rec["wrong_hand"]), "logit": round(logit, 4),
                     "confidence": round(hand_confidence(logit), 4), **rows_extra})
        print(json.dumps({"predictor": label, **rows[-1]}), flush=True)
    solved = [r for r in rows if r["solved"]]
    cells: dict[str, list] = {}
    for r in solved:
        cells.setdefault(f"{r['n_residues']} res {r['d_min']:g} Å", []).append(r["right"])
    return {"predictor": label, "n": len(rows), "refused": refused, "n_solved": len(solved),
            **({"baseline": baseline,
                "baseline_accuracy_on_solved": float(np.mean([r["baseline_right"] for r in solved]))}
               if baseline and solved else {}),
            "accuracy_on_solved": float(np.mean([r["right"] for r in solved])) if solved else None,
            **confident(np.array([r["right"] for r in solved], bool),
                        np.array([r["logit"] for r in solved])),
            "by_cell": {k: {"n": len(v), "right": int(sum(v))} for k, v in cells.items()}, "rows": rows}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="fragment_hand", help="hand card (default fragment_hand)")
    p.add_argument("--data", default=str(REPO / "data_build" / "frag2-15"))
    p.add_argument("--test-every", type=int, default=6)
    p.add_argument("--per-cell", type=int, default=3, help="charge-flipping fragments per fragment_bench cell")
    p.add_argument("--dipeptides", type=int, default=28, help="2 res 1.5 Å fragments through patterson-density")
    p.add_argument("--baseline", default="reccrysformer_dipeptide_recycled_hand",
                   help="a second hand card scored on the same pipeline maps ('' for none)")
    p.add_argument("--figure", default="hand", help="output name under benchmarks/out (default hand)")
    args = p.parse_args()
    t0 = time.monotonic()
    host = default_host()
    results = {"model": args.model, "simulated": simulated(args.model, args.data, args.test_every), "pipeline": [
        pipeline(args.model, "patterson-density", [demo_example()], host, args.baseline),
        pipeline(args.model, "patterson-density", bench_examples(args.dipeptides, "2res_1.5A"), host, args.baseline),
        pipeline(args.model, "charge-flipping", bench_examples(args.per_cell), host, args.baseline)]}
    write_figure(args.figure, results, time.monotonic() - t0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
