"""Where the `patterson-density` default pipeline loses Pearson: measured variants of its output.

For each example (test MTZ pairs of a dataset built from ../shared/corpus, or an ``--mtz-dir`` such as
the output of ``benchmarks/make_validation_mtz.py``) this runs the plugin with ``--cycles K`` exactly as the
CLI does, reads every prediction and every refinement of the recycling from the pipeline's result
(:class:`crysplugins.runtime.reccrysformer.PipelineResult`), and scores against the true phases, map
Pearson over every voxel (paper 000, eq. 7):

* ``output``            the plugin's density (hand model applied to the last prediction);
* ``better_hand``       the last prediction or its inverse, whichever is better (an oracle: the hand ceiling);
* ``hand_mean_logits``  the hand chosen by the mean of the hand model's logits over the refinements of every
  recycled prediction (they share the hand: each follows its template's hand), instead of the last alone;
* ``low_pass``          the output with everything beyond d_min removed;
* ``fobs_phases``       |F_obs|·exp(iφ_pred) of the output (the MTZ the plugin writes), to d_min;
* ``fobs_sigmaa``       m·|F_obs|·exp(iφ_pred) with m = I1(X)/I0(X), X = 2σ_A|E_o||E_c|/(1−σ_A²) (Read 1986),
  σ_A per resolution shell from amplitudes alone: corr(|E_o|², |E_c|²) = σ_A² for acentric reflections;
* cycle 1 run again on the *inverted* template (Q beside the real P): how often the template holds the true
  hand, how often P follows it, whether the amplitude CC of P vs Q with |F_obs| or the density-modification
  score of P vs Q tells the true hand (``*_hand_accuracy``), and the better-hand Pearson of P + inverse(Q).

    OMP_NUM_THREADS=1 python benchmarks/bench_pipeline_variants.py --cycles 3 --mtz-dir /tmp/validation \
        --json runs/variants_val.json
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from crysplugins.crystal.dm.hl import fom_from_kappa
from crysplugins.crystal.fourier import FourierGrid, stol2
from crysplugins.crystal.maps import invert_grid
from crysplugins.crystal.metrics import equal_count_shells, pearson
from crysplugins.evaluation.compare import PredictorLabel, examples_from_dataset, examples_from_mtz_dir
from crysplugins.host import default_host
from crysplugins.runtime.hand import hand_logits
from crysplugins.runtime.reccrysformer import PipelineResult, RecCrysFormerPipeline
from crysplugins.runtime.recycle import refined_map_on_grid, template_from_refinement
sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline_truth import run_against_truth, write_study  # noqa: E402


def sigmaa_weights_from_amplitudes(f_obs: np.ndarray, f_calc: np.ndarray, bins: np.ndarray) -> np.ndarray:
    """Per-reflection figure of merit m of calculated phases, from amplitudes alone (see module docstring)."""
    nb = int(bins.max()) + 1
    count = np.maximum(np.bincount(bins, minlength=nb), 1)
    eo = f_obs / np.sqrt(np.bincount(bins, f_obs ** 2, nb) / count)[bins]
    ec = np.abs(f_calc) / np.sqrt(np.maximum(np.bincount(bins, np.abs(f_calc) ** 2, nb) / count, 1e-30))[bins]
    sa = np.zeros(nb)
    for b in range(nb):
        s = bins == b
        if s.sum() > 3:
            sa[b] = np.sqrt(max(float(np.corrcoef(eo[s] ** 2, ec[s] ** 2)[0, 1]), 0.0))
    sa = np.minimum(sa, 0.98)[bins]
    return fom_from_kappa(2 * sa * eo * ec / (1 - sa ** 2))


def inverted_template(true: np.ndarray, fg: FourierGrid, f_obs: np.ndarray, pipeline: RecCrysFormerPipeline,
                      result: PipelineResult, sequence) -> dict:
    """Cycle 1 run again on the inverted template: does the recycled model, or anything it outputs, prefer
    the template's true hand?  P = prediction from the template T, Q = from T inverted."""
    cycle0, cycle1 = result.recycling.records[:2]
    first, res0, p, res_p = cycle0.prediction, cycle0.refinement, cycle1.prediction, cycle1.refinement
    template, _ = template_from_refinement(res0, first, result.cell)
    runner, _ = pipeline.recycled()
    q = np.asarray(pipeline.predict_with_template(runner, result.patterson, invert_grid(template), sequence),
                   dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    amp = [float(np.corrcoef(np.abs(fg.from_map(m)[0]), f_obs)[0, 1]) for m in (p, q)]
    template_true = pearson(true, template) > pearson(true, invert_grid(template))
    ens = p + invert_grid(q)
    return {"template_true_hand": bool(template_true),
            "p_follows_template": bool((pearson(true, p) > pearson(true, invert_grid(p))) == template_true),
            "amplitude_cc_prefers_template": bool(amp[0] > amp[1]),
            "dm_score_prefers_template": bool(res_p.score > pipeline.refine(
                q, result.observed_used, sequence, result.settings.dm_cycles).score),
            "ensemble_better_hand": max(pearson(true, ens), pearson(true, invert_grid(ens)))}


def score_example(example, host, label, hand_model: str, n_bins: int) -> dict:
    run = run_against_truth(example, host, label)
    pipeline, result, cell, hkl, f, output, fg, true = (run.pipeline, run.result, run.cell, run.hkl, run.f,
                                                        run.output, run.fg, run.true)
    rec = {"id": example.id, "output": pearson(true, output)}
    steps = result.recycling.records if result.recycling is not None else []
    if len(steps) > 1:
        last = np.asarray(steps[-1].prediction, dtype=np.float64)
        keep, flip = pearson(true, last), pearson(true, invert_grid(last))
        logits = []
        for step in steps[1:]:
            res = step.refinement
            refined = refined_map_on_grid(res.hkl, res.amplitudes, res.phases, step.prediction.shape, cell)
            logits.append(float(hand_logits(refined[None], hand_model, cells=[cell])[0]))
        rec.update(better_hand=max(keep, flip), hand_right=bool((logits[-1] > 0) == (flip > keep)),
                   hand_mean_logits=flip if np.mean(logits) > 0 else keep, logits=logits)
        rec.update(inverted_template(true, fg, f, pipeline, result, run.request.require("sequence")))
    f_pred, _ = fg.from_map(output)
    rec["low_pass"] = pearson(true, fg.to_map(f_pred))
    phase = np.exp(1j * np.angle(f_pred))
    rec["fobs_phases"] = pearson(true, fg.to_map(f * phase))
    bins = equal_count_shells(1.0 / np.sqrt(4.0 * stol2(cell, hkl)), n_bins)
    m = sigmaa_weights_from_amplitudes(f, f_pred, bins)
    rec["fobs_sigmaa"] = pearson(true, fg.to_map(m * f * phase))
    return rec


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="data_build/dipeptide", help="dataset whose test MTZs are used")
    ap.add_argument("--mtz-dir", help="instead: a folder of <id>_amplitudes.mtz / <id>_phases.mtz / <id>.seq")
    ap.add_argument("--cycles", type=int, default=1)
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--every", type=int, default=27, help="take every N-th test example (ignored with --mtz-dir)")
    ap.add_argument("--hand-model", default="reccrysformer_dipeptide_recycled_hand")
    ap.add_argument("--shells", type=int, default=12, help="resolution shells for σ_A")
    ap.add_argument("--json", required=True)
    args = ap.parse_args(argv)
    examples = (examples_from_mtz_dir(args.mtz_dir) if args.mtz_dir
                else examples_from_dataset(args.data)[::args.every])[:args.n]
    host = default_host()
    label = PredictorLabel.parse(f"patterson-density:cycles={args.cycles}")
    records = []
    for i, ex in enumerate(examples):
        records.append(score_example(ex, host, label, args.hand_model, args.shells))
        if (i + 1) % 50 == 0:
            print(f"{i + 1}/{len(examples)}", flush=True)
    keys = [k for k in ("output", "better_hand", "hand_mean_logits", "low_pass", "fobs_phases", "fobs_sigmaa",
                        "ensemble_better_hand") if k in records[0]]
    summary = {k: float(np.mean([r[k] for r in records])) for k in keys}
    if "template_true_hand" in records[0]:  # fractions; for the two 'prefers' signals: how often they are right
        t = np.array([r["template_true_hand"] for r in records])
        summary["template_true_hand"] = float(t.mean())
        summary["p_follows_template"] = float(np.mean([r["p_follows_template"] for r in records]))
        for k in ("amplitude_cc_prefers_template", "dm_score_prefers_template"):
            summary[k.replace("prefers_template", "hand_accuracy")] = float(
                np.mean(np.array([r[k] for r in records]) == t))
    if "hand_right" in records[0]:
        summary["hand_accuracy"] = float(np.mean([r["hand_right"] for r in records]))
    summary["n"] = len(records)
    summary["cycles"] = args.cycles
    write_study(args.json, summary, records)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
