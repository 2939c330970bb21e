"""Build the crystals for solvent-U-net training and its benchmark (reads ../shared/corpus).

Writes ``data_build/solvent/{train,val,test}_sources.npz`` (see crysplugins.datasets.solvent_windows):
train and val come from the training families (val = 10 % of the crystals, for monitoring only); test
from the held-out families TEST_FAMILIES.  Usage (from the repository root):

    OMP_NUM_THREADS=1 python benchmarks/build_solvent_sources.py [--corpus ../shared/corpus] [--out DIR]
        [--solvent-range 0.25 0.70] [--test-only]

``--test-only`` writes only the held-out test crystals (what the solvent benchmarks read), in seconds.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from crysplugins.datasets.solvent_windows import TEST_FAMILIES, load_corpus_sources, save_sources


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "corpus"))
    ap.add_argument("--out", default="data_build/solvent")
    ap.add_argument("--max-packed", type=int, default=60)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--solvent-range", type=float, nargs=2, default=(0.40, 0.60), metavar=("LO", "HI"),
                    help="solvent fraction drawn for chains packed into training/validation crystals (the test "
                         "crystals always use the default 0.40-0.60, so every build has the same test set)")
    ap.add_argument("--test-only", action="store_true", help="build only test_sources.npz")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    t0 = time.time()
    test = load_corpus_sources(Path(args.corpus), rng, max_packed_per_family=args.max_packed,
                               families=set(TEST_FAMILIES))
    print(f"test: {len(test)} crystals ({time.time() - t0:.0f} s)", flush=True)
    if args.test_only:
        save_sources(test, out / "test_sources.npz")
        return
    train = load_corpus_sources(Path(args.corpus), rng, max_packed_per_family=args.max_packed,
                                exclude_families=set(TEST_FAMILIES), solvent_range=tuple(args.solvent_range))
    print(f"train+val: {len(train)} crystals ({time.time() - t0:.0f} s)", flush=True)
    order = rng.permutation(len(train))
    n_val = max(2, len(train) // 10)
    val = [train[i] for i in order[:n_val]]
    train = [train[i] for i in order[n_val:]]
    for name, group in (("train", train), ("val", val), ("test", test)):
        save_sources(group, out / f"{name}_sources.npz")
        fam = sorted({s.family for s in group})
        vox = sum(s.mask.size for s in group)
        print(f"{name}: {len(group)} crystals, families {fam}, {vox / 1e6:.1f} M voxels, "
              f"solvent {np.mean([s.solvent_fraction for s in group]):.3f}", flush=True)


if __name__ == "__main__":
    main()
