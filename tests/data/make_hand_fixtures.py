"""Regenerate tests/data/hand_maps.npz (run once; the output is committed).

32 held-out maps for the hand model's accuracy test: from the test split of data_build/frag2-15 (test families
only, never seen by the fit), the rows whose grid has at most 24 x 24 x 32 points, taken at even steps through
that list so that lengths 2-15 and d_min 1.5-2.5 Å are spread; each is the true density to its d_min with
von Mises phase errors of mean 20° (a solved pipeline map;
:func:`crysplugins.training.hand_chirality.degraded_map`, seed 7), rms units, float16.  The rows are chosen
without looking at any hand model's call.

    OMP_NUM_THREADS=1 python tests/data/make_hand_fixtures.py
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from crysplugins.datasets.store import open_dataset
from crysplugins.training.hand_chirality import degraded_map

REPO = Path(__file__).resolve().parents[2]
N = 32


def save_maps(ds, picks: list, phase_error: float, path: Path) -> None:
    """The picked (shard, row) maps of ``ds``: true density to d_min with von Mises phase errors of mean
    ``phase_error`` (seed 7), rms units, float16, with cells, lengths, d_min, ids and sequences."""
    rng = np.random.default_rng(7)
    maps, cells, lengths, d_mins, ids, shapes, sequences = [], [], [], [], [], [], []
    loaded: dict = {}
    for shard, row in picks:
        a = loaded.setdefault(shard.path, shard.load())
        m = degraded_map(a["density"][row], a["cell"][row], float(a["d_min"][row]), phase_error, rng)
        maps.append(m.astype(np.float16).ravel())
        shapes.append(m.shape)
        cells.append(a["cell"][row])
        lengths.append(int((a["sequence_index"][row] >= 0).sum()))
        d_mins.append(float(a["d_min"][row]))
        ids.append(str(a["ids"][row]))
        sequences.append(ds.sequences(a["sequence_index"][row:row + 1])[0])
    np.savez_compressed(path, flat=np.concatenate(maps), shapes=np.array(shapes),
                        cells=np.array(cells, dtype=np.float32), n_residues=np.array(lengths), d_min=np.array(d_mins, dtype=np.float32), ids=np.array(ids),
                        sequences=np.array(sequences))


def main() -> None:
    ds = open_dataset(REPO / "data_build" / "frag2-15")
    small = [(shard, row) for shard in ds.shards("test") if np.prod(shard.path.stem.split("-")[1].split("x"),
                                                                     dtype=float) <= 24 * 24 * 32
             for row in range(shard.n)]
    picks = [small[i] for i in np.linspace(0, len(small) - 1, N).round().astype(int)]
    save_maps(ds, picks, 20.0, Path(__file__).resolve().parent / "hand_maps.npz")


if __name__ == "__main__":
    main()
