"""Build a development set of crystals for tuning density modification (reads ../shared/corpus).

The DM benchmark (``bench_density_modify.py``) scores every corpus entry with a real cell; tuning the
engine on those crystals would tune on the benchmark.  This set is made of *other* structures: single chains
of the training families (not ``TEST_FAMILIES``, not any entry with a real cell) packed into cells of our own
(:func:`crysplugins.datasets.solvent_windows.pack_chain`), with d_min drawn in ``--d-range`` (Å).  Written as
a PhasingSource cache that ``bench_density_modify.py --sources`` reads.

    OMP_NUM_THREADS=1 python benchmarks/build_dm_dev_sources.py --n 8 --d-range 2.4 3.0 \
        --out data_build/dm_dev_lowres.npz

``--segment MIN MAX`` makes small crystals instead (the benchmark's smallest, 5I55, 3JQH and 1AJJ, hold
22-37 residues and 1,300-3,100 reflections, and the corpus has no training chain that short): from each chain
the most compact contiguous window of MIN-MAX residues (smallest radius of gyration of its CA atoms), packed
at a solvent fraction drawn in ``--solvent-range``.

    OMP_NUM_THREADS=1 python benchmarks/build_dm_dev_sources.py --n 10 --segment 25 60 --d-range 1.5 2.3 \
        --solvent-range 0.2 0.5 --out data_build/dm_dev_small.npz
"""
from __future__ import annotations

import argparse
from pathlib import Path

import gemmi
import numpy as np

from crysplugins.datasets.phasing import prepare_source
from crysplugins.datasets.solvent_windows import TEST_FAMILIES, pack_chain, read_manifest, save_sources

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"


def compact_segment(structure: gemmi.Structure, length: int) -> gemmi.Structure | None:
    """The first chain's contiguous window of ``length`` residues with the smallest CA radius of gyration (Å)."""
    st = structure.clone()
    st.remove_ligands_and_waters()
    st.remove_empty_chains()
    while len(st) > 1:
        del st[1]
    while len(st[0]) > 1:
        del st[0][1]
    chain = st[0][0]
    ca = [r.find_atom("CA", "*") for r in chain]
    if len(chain) < length or any(a is None for a in ca):
        return None
    xyz = np.array([a.pos.tolist() for a in ca])
    rg = [np.sqrt(((w - w.mean(0)) ** 2).sum(1).mean()) for w in np.lib.stride_tricks.sliding_window_view(
        xyz, (length, 3))[:, 0]]
    start = int(np.argmin(rg))
    for i in reversed(range(len(chain))):
        if not start <= i < start + length:
            del chain[i]
    return st


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", default=str(CORPUS))
    ap.add_argument("--n", type=int, default=8, help="crystals (one per family, families in turn)")
    ap.add_argument("--d-range", type=float, nargs=2, default=(2.4, 3.0), metavar=("LO", "HI"))
    ap.add_argument("--residues", type=int, nargs=2, default=(90, 260), metavar=("MIN", "MAX"),
                    help="chain length range (keeps each DM run to seconds)")
    ap.add_argument("--segment", type=int, nargs=2, default=None, metavar=("MIN", "MAX"),
                    help="cut a compact window of MIN-MAX residues from each chain (small crystals)")
    ap.add_argument("--solvent-range", type=float, nargs=2, default=(0.40, 0.60), metavar=("LO", "HI"))
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--out", default="data_build/dm_dev_lowres.npz")
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    entries = [e for e in read_manifest(Path(args.corpus)) if e.space_group == "NA" and e.family not in TEST_FAMILIES]
    lo, hi = args.residues
    by_family: dict[str, list] = {}
    for e in entries:
        by_family.setdefault(e.family, []).append(e)
    for fam in by_family.values():
        rng.shuffle(fam)
    sources = []
    while len(sources) < args.n and any(by_family.values()):
        for fam, pool in sorted(by_family.items()):  # one chain per family and round: many folds
            if len(sources) >= args.n or not pool:
                continue
            e = pool.pop()
            st = gemmi.read_structure(str(e.path))
            if args.segment:
                st = compact_segment(st, int(rng.integers(args.segment[0], args.segment[1] + 1)))
                if st is None:
                    continue
            n_res = sum(len(ch) for ch in st[0])
            crystal = (pack_chain(st, rng, solvent_range=tuple(args.solvent_range))
                       if args.segment or lo <= n_res <= hi else None)
            if crystal is None:
                continue
            src = prepare_source(crystal, float(rng.uniform(*args.d_range)), name=f"{e.id}-dev", family=e.family)
            sources.append(src)
            print(f"{src.name} {crystal.spacegroup_hm} d_min {src.d_min:.2f} A, {n_res} residues, "
                  f"{len(src.hkl)} reflections, solvent {src.solvent_fraction:.2f}", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    save_sources(sources, Path(args.out))
    print(f"{len(sources)} crystals -> {args.out}")


if __name__ == "__main__":
    main()
