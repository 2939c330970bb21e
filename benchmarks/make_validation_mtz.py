"""Validation MTZ pairs from training-split examples the recycled model never saw.

The recycled RecCrysFormer trains on the rows of one template set (``templates/<set>``: 10 % of the training
split); the other 90 % of the training split is data it has never seen, from the training families, so it
can choose settings such as the number of recycling cycles without touching the cluster-held-out test
split.  (The first model did see these rows, so its first prediction is better on them than on new data.)

Reads a dataset built from ../shared/corpus (``data_build/dipeptide``: index, shards, template set);
writes, for N such rows drawn with a fixed seed, ``<id>_amplitudes.mtz`` (F, SIGF), ``<id>_phases.mtz``
(F, PHI, true phases) and ``<id>.seq`` — the layout ``crysplugins evaluate --mtz-dir`` reads.  F is the
Fourier transform of the stored true density (float16, normalised) back on the e/Å³ scale, to the row's d_min.

    python benchmarks/make_validation_mtz.py --data data_build/dipeptide --templates rc1_initial \
        --out /tmp/validation --n 600
"""
from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import gemmi
import numpy as np

from crysplugins.datasets.build import write_test_mtz
from crysplugins.datasets.store import open_dataset


def unseen_train_ids(root: Path, template_set: str) -> list[str]:
    """Ids of training-split rows absent from the template set's training rows (sorted)."""
    ds = open_dataset(root)
    folder = ds.root / "templates" / template_set
    seen: set[str] = set()
    for path in sorted(folder.glob("train-*.npz")):
        with np.load(path, allow_pickle=False) as z:
            seen.update(str(i) for i in z["ids"])
    if not seen:
        raise SystemExit(f"{folder} holds no training rows (train-*.npz); name the recycled model's template set.")
    return sorted(r["id"] for r in ds.examples("train") if r["id"] not in seen)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="data_build/dipeptide")
    ap.add_argument("--templates", default="rc1_initial", help="the template set the recycled model trained on")
    ap.add_argument("--out", required=True)
    ap.add_argument("--n", type=int, default=600)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    ds = open_dataset(args.data)
    ids = unseen_train_ids(ds.root, args.templates)
    rng = np.random.default_rng(args.seed)
    chosen = set(rng.choice(ids, size=min(args.n, len(ids)), replace=False).tolist())
    rows = {r["id"]: r for r in ds.examples("train") if r["id"] in chosen}
    by_shard: dict[str, list[dict]] = defaultdict(list)
    for r in rows.values():
        by_shard[r["shard"]].append(r)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, group in sorted(by_shard.items()):
        with np.load(ds.root / "shards" / name, allow_pickle=False) as z:
            density = z["density"]
            for r in group:
                rho = ds.denormalise(density[r["row"]].astype(np.float64), "density")
                cell = gemmi.UnitCell(r["a"], r["b"], r["c"], r["alpha"], r["beta"], r["gamma"])
                shape = (r["nu"], r["nv"], r["nw"])
                write_test_mtz(out, r["id"], np.fft.rfftn(rho), cell, shape, float(r["d_min"]))
                (out / f"{r['id']}.seq").write_text(f">{r['id']}\n{r['sequence']}\n")
    print(f"{len(rows)} unseen training examples (of {len(ids)}) written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
