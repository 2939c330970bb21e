"""Noisy copies of held-out test MTZ pairs, for the robustness check of `patterson-density`.

Reads a dataset's ``test_mtz/`` (built from ../shared/corpus) and its ``index.tsv``; writes, for N
examples drawn with a fixed seed, ``<id>_amplitudes.mtz`` with F → |F + N(0, (frac·F)²)| and SIGF = frac·F,
the true-phase ``<id>_phases.mtz`` unchanged, and ``<id>.seq``, the layout ``crysplugins evaluate --mtz-dir``
reads.  ``frac`` 0 gives clean copies of the same examples.

    python benchmarks/make_noisy_mtz.py --data data_build/dipeptide --out /tmp/noisy5 --frac 0.05 --n 400
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import gemmi
import numpy as np

from crysplugins.datasets.store import open_dataset


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="data_build/dipeptide")
    ap.add_argument("--out", required=True)
    ap.add_argument("--frac", type=float, default=0.05, help="relative noise on F (0.05 = 5 %%)")
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    ds = open_dataset(args.data)
    src, out = ds.root / "test_mtz", Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    seq = {r["id"]: r["sequence"] for r in ds.index}
    rng = np.random.default_rng(args.seed)
    ids = sorted(p.name[:-len("_amplitudes.mtz")] for p in src.glob("*_amplitudes.mtz"))
    rng.shuffle(ids)
    for i in ids[:args.n]:
        mtz = gemmi.read_mtz_file(str(src / f"{i}_amplitudes.mtz"))
        data = np.array(mtz, copy=True)
        fi, si = mtz.column_labels().index("F"), mtz.column_labels().index("SIGF")
        f = data[:, fi].copy()
        data[:, fi] = np.abs(f + rng.normal(0.0, 1.0, len(f)) * args.frac * f)
        data[:, si] = args.frac * f + 1e-3
        mtz.set_data(data)
        mtz.write_to_file(str(out / f"{i}_amplitudes.mtz"))
        shutil.copy(src / f"{i}_phases.mtz", out / f"{i}_phases.mtz")
        (out / f"{i}.seq").write_text(f">{i}\n{seq[i]}\n")
    print(f"{min(args.n, len(ids))} examples written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
