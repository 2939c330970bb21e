"""What the `patterson-density` pipeline's last steps are worth: centring and the final refinement.

For each example (test MTZ pairs of a dataset built from ../shared/corpus, every N-th, or an
``--mtz-dir`` such as the output of ``benchmarks/make_validation_mtz.py``) this runs the plugin exactly as
the CLI does (the card's defaults unless ``--pipeline`` says otherwise), reads the last recycled prediction
and its refinements from the pipeline's result (:class:`crysplugins.runtime.reccrysformer.PipelineResult`),
and scores maps against the true-phase map, Pearson over every voxel (paper 000, eq. 7):

* ``output``                 the plugin's ``density``;
* ``prediction``             the last recycled prediction as it came out of the network (before the hand);
* ``dm50``                   its density-modified map after the recycling refinement (``dm_cycles``, 50);
* ``dm_final``               its final density-modified map (``final_dm_cycles`` of the card, 200);
* ``*_centred``              the same maps moved so that their strong-density centroid is at the cell
  centre (:func:`crysplugins.crystal.maps.centre_density`), where the training data put the centre of mass;
* ``*_circular``             centred by the circular (periodic) mean instead, for comparison;

each with the hand the plugin's hand model chose (``*`` as returned by the pipeline: the same decision for
every map) and with the better hand (oracle ceiling).  Also: how often the hand model is right for each map,
and the phase error of the output (amplitude-weighted, degrees).

    OMP_NUM_THREADS=1 python benchmarks/bench_final_refinement.py --every 8 --json runs/final_refinement_test.json
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from crysplugins.crystal.maps import centre_density, invert_grid, shift_grid
from crysplugins.crystal.metrics import pearson, phase_error
from crysplugins.evaluation.compare import PredictorLabel, examples_from_dataset, examples_from_mtz_dir
from crysplugins.host import default_host
from crysplugins.runtime.recycle import refined_map_on_grid
sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline_truth import run_against_truth, write_study  # noqa: E402


def circular_centred(a: np.ndarray, z_min: float = 1.0) -> np.ndarray:
    """``a`` moved so that the circular (periodic) mean of its strong density is at the cell centre."""
    a = np.asarray(a, dtype=np.float64)
    z = (a - a.mean()) / a.std()
    w = np.where(z > z_min, z, 0.0)
    shift = []
    for axis, n in enumerate(a.shape):
        profile = w.sum(axis=tuple(i for i in range(3) if i != axis))
        angle = 2 * np.pi * (np.arange(n) / n - 0.5)
        shift.append(-np.arctan2((profile * np.sin(angle)).sum(), (profile * np.cos(angle)).sum()) / (2 * np.pi))
    return shift_grid(a, shift)


def score_example(example, host, label) -> dict:
    run = run_against_truth(example, host, label)
    result, cell, hkl, f, phi, output, true = run.result, run.cell, run.hkl, run.f, run.phi, run.output, run.true
    f_out, _ = run.fg.from_map(output)
    rec = {"id": example.id, "output": pearson(true, output),
           "output_phase_error": phase_error(hkl, phi, np.degrees(np.angle(f_out)), weights=f)}
    if result.recycling is None:
        return rec
    inverted = result.hand.inverted
    # the maps as the pipeline had them before the hand model's decision
    last = np.asarray(result.recycling.prediction, dtype=np.float64)
    maps = {"prediction": last}
    res = result.recycling.refinement  # the last recycling refinement (dm_cycles)
    maps["dm50"] = refined_map_on_grid(res.hkl, res.amplitudes, res.phases, last.shape, cell)
    res = result.final_refinement
    maps["dm_final"] = refined_map_on_grid(res.hkl, res.amplitudes, res.phases, last.shape, cell)
    for name in ("prediction", "dm50", "dm_final"):
        maps[f"{name}_centred"] = centre_density(maps[name])[0]
    for name in ("prediction", "dm_final"):
        maps[f"{name}_circular"] = circular_centred(maps[name])
    for name, m in maps.items():
        keep, flip = pearson(true, m), pearson(true, invert_grid(m))
        rec[name] = flip if inverted else keep  # with the hand the hand model chose
        rec[f"{name}_better_hand"] = max(keep, flip)
        rec[f"{name}_hand_right"] = bool((flip > keep) == inverted)
    rec["hand_logit"] = float(result.hand.logit)
    return rec


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="data_build/dipeptide", help="dataset whose test MTZs are used")
    ap.add_argument("--mtz-dir", help="instead: a folder of <id>_amplitudes.mtz / <id>_phases.mtz / <id>.seq")
    ap.add_argument("--every", type=int, default=8, help="take every N-th test example (ignored with --mtz-dir)")
    ap.add_argument("--n", type=int, help="at most N examples")
    ap.add_argument("--pipeline", default="patterson-density", help="plugin and options (NAME:key=value,...)")
    ap.add_argument("--json", required=True)
    args = ap.parse_args(argv)
    examples = (examples_from_mtz_dir(args.mtz_dir) if args.mtz_dir
                else examples_from_dataset(args.data)[::args.every])[:args.n]
    host = default_host()
    label = PredictorLabel.parse(args.pipeline)
    records = []
    for i, ex in enumerate(examples):
        records.append(score_example(ex, host, label))
        if (i + 1) % 100 == 0:
            print(f"{i + 1}/{len(examples)}: output {np.mean([r['output'] for r in records]):.3f}", flush=True)
    keys = [k for k in records[0] if k not in ("id", "hand_logit")]
    summary = {k: float(np.mean([r[k] for r in records])) for k in keys}
    summary.update(n=len(records), pipeline=args.pipeline,
                   examples=args.mtz_dir or f"every {args.every}th test example of {args.data}")
    write_study(args.json, summary, records)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
