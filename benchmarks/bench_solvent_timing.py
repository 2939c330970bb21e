"""Whole-cell inference time of the solvent U-net on 1RX2: onnxruntime (what users run) against torch.

Reads ``../shared/corpus/diffraction/1rx2_phases.mtz`` (FP, PHWT, FOM; 1.8 Å): the FOM-weighted map on the
Shannon grid (40 × 54 × 120) is tiled into overlapping 48³ windows, predicted and blended, as the
``solvent-mask`` plugin does.  onnxruntime runs the shipped ``models/solvent-unet.onnx``; torch runs the
same architecture, read from the model card, in eval mode through the same tiling.  The torch net has
fresh weights: the time of a forward pass does not depend on the weights' values, and the shipped ONNX
graph (batch norm folded into the convolutions) does not load back into torch.  Each time is the second
of two runs.  Needs the ``train`` extra (torch).  Writes ``benchmarks/out/solvent_inference_time.json``.

    OMP_NUM_THREADS=2 CRYSPLUGINS_THREADS=2 python benchmarks/bench_solvent_timing.py --threads 2
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from bench_solvent import CORPUS
from crysplugins.crystal.io import read_mtz
from crysplugins.crystal.phasing_input import from_reflections
from crysplugins.runtime.solvent_unet import load_solvent_model, solvent_probability
from crysplugins.runtime.tiling import predict_tiled
from figure_output import write_figure


def second_of_two(fn) -> float:
    """Seconds of the second call (the first warms caches and thread pools)."""
    fn()
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="solvent-unet")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (set CRYSPLUGINS_THREADS alike)")
    args = ap.parse_args()
    import torch  # optional heavy dependency, only for the comparison

    from crysplugins.training.nets.unet3d import UNet3D

    torch.set_num_threads(args.threads)
    runner, card = load_solvent_model(args.model)
    refl = read_mtz(CORPUS / "diffraction" / "1rx2_phases.mtz", columns={"F": "FP", "PHI": "PHWT", "FOM": "FOM"})
    cmap = from_reflections(refl).map
    arch = {k: card["architecture"][k] for k in ("base", "in_channels", "n_classes", "depth")}
    net = UNet3D(**arch).eval()
    arr = (cmap.array - cmap.array.mean()) / cmap.array.std()
    tiling = {"window": card["input"]["window"], "overlap": card["tiling"]["overlap"],
              "batch_size": card["tiling"]["batch"]}

    def torch_predict(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            lg = net(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy()
        return 1.0 / (1.0 + np.exp(lg[:, :1] - lg[:, 1:2]))

    t_onnx = second_of_two(lambda: solvent_probability(cmap, runner, card))
    t_torch = second_of_two(lambda: predict_tiled(arr, torch_predict, **tiling))
    res = {"grid": list(cmap.shape), "threads": args.threads, "onnxruntime_s": round(t_onnx, 3),
           "torch_s": round(t_torch, 3), "torch_over_onnx": round(t_torch / t_onnx, 2)}
    print(res, flush=True)
    write_figure("solvent_inference_time", res)


if __name__ == "__main__":
    main()
