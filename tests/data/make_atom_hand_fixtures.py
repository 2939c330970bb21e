"""Regenerate tests/data/atom_hand_maps.npz (run once; the output is committed).

12 held-out true maps of 2–5 residues for the atom-fit hand test: from the test split of data_build/frag2-15 (test
families only), the rows of 2–5 residues whose grid has at most 24 x 24 x 32 points, taken at even steps through
that list so that lengths and d_min 1.5–2.5 Å are spread; each is the true density to its d_min
(:func:`crysplugins.training.hand_chirality.degraded_map` with no phase error), rms units, float16, with its
sequence.  The rows are chosen without looking at any hand model's call.

    OMP_NUM_THREADS=1 python tests/data/make_atom_hand_fixtures.py   (uses make_hand_fixtures.save_maps)
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from make_hand_fixtures import REPO, save_maps

from crysplugins.datasets.store import open_dataset

N = 12


def main() -> None:
    ds = open_dataset(REPO / "data_build" / "frag2-15")
    small = []
    for shard in ds.shards("test"):
        if np.prod(shard.shape, dtype=float) > 24 * 24 * 32:
            continue
        lengths = (shard.load()["sequence_index"] >= 0).sum(axis=1)
        small += [(shard, row) for row in range(shard.n) if 2 <= lengths[row] <= 5]
    picks = [small[i] for i in np.linspace(0, len(small) - 1, N).round().astype(int)]
    save_maps(ds, picks, 0.0, Path(__file__).resolve().parent / "atom_hand_maps.npz")


if __name__ == "__main__":
    main()
