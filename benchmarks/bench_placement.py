"""Placement of fragment maps at the training data's centre-of-mass position, at any origin.

The transformer was trained on maps whose fragment has its centre of mass at the cell centre (paper 000,
appendix B).  Charge flipping leaves an arbitrary origin and density modification keeps its start's, so
every returned map is moved back there by :func:`crysplugins.crystal.maps.centre_density`.  This figure
takes the TRUE density maps of held-out test fragments (2-15 residues, 1.5-2.5 Å), moves each by a random
fraction of the cell (so long fragments straddle the boundary), centres it and reports the map Pearson
(eq. 7) with the original placement, per length band.  Reads a dataset built by

    crysplugins dataset build --structures ../shared/corpus/structures --out data_build/frag2-15 \\
        --lengths 2 15 --d-min-range 1.5 2.5 --rate-range 2.305 2.745 --max-grid 64 --max-examples 24000 \\
        --patterson-norm per_map --min-bin-size 2

    python benchmarks/bench_placement.py --data data_build/frag2-15    # writes benchmarks/out/placement.json
"""
from __future__ import annotations

import argparse
import json
import gemmi
import numpy as np

from crysplugins.crystal.maps import centre_density, shift_grid
from crysplugins.crystal.metrics import pearson
from crysplugins.datasets.store import open_dataset
from figure_output import write_figure

BANDS = ((2, 4), (5, 9), (10, 15))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="data_build/frag2-15")
    ap.add_argument("--per-shard", type=int, default=3, help="examples per test shard")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    rows = []
    for shard in open_dataset(args.data).shards("test"):
        arrays = shard.load()
        for i in range(min(args.per_shard, len(arrays["ids"]))):
            truth = arrays["density"][i].astype(np.float64)
            cell = gemmi.UnitCell(*arrays["cell"][i])
            moved = shift_grid(truth, rng.uniform(-0.5, 0.5, 3))
            back, _ = centre_density(moved, cell=cell)
            rows.append({"id": str(arrays["ids"][i]), "residues": int((arrays["sequence_index"][i] >= 0).sum()),
                         "pearson_moved": pearson(moved, truth), "pearson_centred": pearson(back, truth)})
    bands = {}
    for lo, hi in BANDS:
        sel = [r for r in rows if lo <= r["residues"] <= hi]
        bands[f"{lo}-{hi}"] = {"n": len(sel), "mean_pearson_moved": float(np.mean([r["pearson_moved"] for r in sel])),
                               "mean_pearson_centred": float(np.mean([r["pearson_centred"] for r in sel])),
                               "fraction_below_0.9": float(np.mean([r["pearson_centred"] < 0.9 for r in sel]))}
    write_figure("placement", {"data": args.data, "bands": bands, "rows": rows})
    print(json.dumps(bands, indent=1))


if __name__ == "__main__":
    main()
