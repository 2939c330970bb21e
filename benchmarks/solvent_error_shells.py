"""Where solvent masks go wrong: errors by distance from the true protein/solvent boundary.

Reads ../shared/corpus through data_build/solvent/test_sources.npz (the 17 held-out-family crystals built by
benchmarks/build_solvent_sources.py).  For each mean phase error (degrees) it simulates a phasing map per
crystal exactly as benchmarks/bench_solvent.py does, predicts the U-net's solvent probability (whole cell,
symmetry-averaged) and the local-variance mask at the true solvent fraction, and splits the wrongly
classified voxels by their layer from the true mask's boundary: layer 0 touches the other class (one of
its six face neighbours differs), layer 1 touches layer 0, and so on (6-connected voxel steps, periodic).

It answers two questions behind the U-net's margin target (≥ 5 points over local variance):
* how much of each method's error lies in the boundary layers, which a vdW-radius mask makes rugged;
* what both methods reach when the phases are nearly right (a small mean phase error), i.e. how much room
  the map leaves between local variance and any learned segmentation.

    OMP_NUM_THREADS=2 python benchmarks/solvent_error_shells.py --phase-errors 7 25 50 --json out.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from crysplugins.crystal.masks import local_variance_mask, mask_scores, threshold_fraction
from crysplugins.datasets.phasing import phasing_map, simulate_phasing
from crysplugins.datasets.solvent_windows import load_sources
from crysplugins.runtime.solvent_unet import load_solvent_model, solvent_probability, symmetry_averaged

N_LAYERS = 4  # layers 0..N_LAYERS-1 are reported one by one, the rest together


def boundary_layers(mask: np.ndarray, n_layers: int = N_LAYERS) -> np.ndarray:
    """Layer index of every voxel from the boundary of the binary ``mask`` (periodic, 6-connected steps).

    0 = a face neighbour has the other class; k = k erosions of the voxel's own class reach it; voxels deeper
    than ``n_layers - 1`` get ``n_layers``.
    """
    layers = np.full(mask.shape, n_layers, dtype=np.int8)
    for region in (mask, ~mask):
        inner = region.copy()
        for k in range(n_layers):
            eroded = inner.copy()
            for axis in range(3):
                for step in (1, -1):
                    eroded &= np.roll(inner, step, axis)
            layers[inner & ~eroded] = k
            inner = eroded
    return layers


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="solvent-unet")
    ap.add_argument("--sources", default="data_build/solvent/test_sources.npz")
    ap.add_argument("--phase-errors", type=float, nargs="+", default=[7.0, 25.0, 50.0])
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    session, card = load_solvent_model(args.model)
    sources = load_sources(Path(args.sources))
    rng = np.random.default_rng(args.seed)
    summary = {}
    for pe in args.phase_errors:
        rows = []
        for src in sources:
            sim = simulate_phasing(src, pe, rng)
            cmap = phasing_map(src, sim)
            truth = src.mask > 0.5
            prob = symmetry_averaged(cmap, solvent_probability(cmap, session, card))
            _, lv = local_variance_mask(cmap, src.solvent_fraction, d_min=src.d_min, fom=float(np.mean(sim.fom)))
            masks = {"unet_p05": prob > 0.5, "unet_true_fraction": threshold_fraction(prob, src.solvent_fraction) > 0.5,
                     "lv_true_fraction": np.asarray(lv.array) > 0.5}
            layers = boundary_layers(truth)
            row = {"name": src.name, "d_min": round(src.d_min, 2), "phase_error": round(sim.mean_phase_error, 1),
                   "layer_fraction": [round(float((layers == k).mean()), 4) for k in range(N_LAYERS + 1)]}
            for key, m in masks.items():
                wrong = m != truth
                row[key] = {"accuracy": round(mask_scores(m, truth).accuracy, 4),
                            "error_in_layer": [round(float(wrong[layers == k].mean()), 4) if (layers == k).any()
                                               else 0.0 for k in range(N_LAYERS + 1)],
                            "error_share_of_layers_0_1": round(float(wrong[layers <= 1].sum() / max(wrong.sum(), 1)), 4)}
            rows.append(row)
            print(f"{pe:4.0f} {src.name:14s} {src.d_min:.2f} A  layer0 {row['layer_fraction'][0]:.3f}  "
                  + "  ".join(f"{k} {row[k]['accuracy']:.3f}" for k in masks), flush=True)
        s = {"n": len(rows), "realised_phase_error": round(float(np.mean([r["phase_error"] for r in rows])), 1),
             "layer_fraction": np.round(np.mean([r["layer_fraction"] for r in rows], axis=0), 4).tolist()}
        for key in ("unet_p05", "unet_true_fraction", "lv_true_fraction"):
            s[key] = {"accuracy": round(float(np.mean([r[key]["accuracy"] for r in rows])), 4),
                      "error_in_layer": np.round(np.mean([r[key]["error_in_layer"] for r in rows], axis=0), 4).tolist(),
                      "error_share_of_layers_0_1": round(float(np.mean([r[key]["error_share_of_layers_0_1"]
                                                                        for r in rows])), 4)}
        summary[str(pe)] = {"summary": s, "rows": rows}
        print(json.dumps(s), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"model": args.model, "seed": args.seed, "results": summary}, indent=1))


if __name__ == "__main__":
    main()
