"""Held-out benchmark fragments: {2, 5, 10, 15} residues x {1.5, 2.0, 2.25, 2.5} Å from the corpus.

Each cell is one ``crysplugins dataset build`` of ../shared/corpus (fixed length ``--residues N``, fixed
``--d-min D``, ``--rate 2.5``, ``--max-examples``, the default family split with seed 0, so the test
families are F03–F09 and F11–F16).  Only the test split's ``test_mtz/<id>_amplitudes.mtz`` and
``<id>_phases.mtz`` are kept, copied with a ``fragments.tsv`` (id, family, sequence, residues, d_min,
cell) into ``data_build/fragment_bench/<n>res_<d>A/``.  The builds themselves go to a temporary folder.

    OMP_NUM_THREADS=1 .venv-test/bin/python benchmarks/make_fragment_set.py

About 15 s per cell on one core (4 minutes in all); cells already present are skipped.
"""
from __future__ import annotations

import argparse
import csv
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus"
OUT = REPO / "data_build" / "fragment_bench"
FIELDS = ["id", "family", "sequence", "n_residues", "d_min", "a", "b", "c", "alpha", "beta", "gamma"]


def cell_name(n: int, d_min: float) -> str:
    """Folder name of a cell, e.g. ``10res_2.25A``."""
    return f"{n}res_{d_min:g}A"


def build_cell(n: int, d_min: float, per_cell: int, max_examples: int, out: Path, exe: str) -> int:
    """Build one cell's dataset in a temporary folder and copy ``per_cell`` test fragments; returns the count."""
    with tempfile.TemporaryDirectory(prefix="fragbench_") as tmp:
        cmd = [exe, "dataset", "build", "--structures", str(CORPUS / "structures"), "--out", tmp,
               "--residues", str(n), "--d-min", str(d_min), "--rate", "2.5", "--max-examples", str(max_examples),
               "--seed", "0", "--quiet"]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        with open(Path(tmp) / "index.tsv", newline="") as fh:
            rows = [r for r in csv.DictReader(fh, delimiter="\t") if r["split"] == "test"]
        rows = sorted(rows, key=lambda r: r["id"])[:per_cell]
        out.mkdir(parents=True, exist_ok=True)
        for r in rows:
            for kind in ("amplitudes", "phases"):
                shutil.copy(Path(tmp) / "test_mtz" / f"{r['id']}_{kind}.mtz", out / f"{r['id']}_{kind}.mtz")
        with open(out / "fragments.tsv", "w", newline="") as fh:
            w = csv.DictWriter(fh, FIELDS, delimiter="\t", extrasaction="ignore")
            w.writeheader()
            for r in rows:
                w.writerow(dict(r, n_residues=n))
    return len(rows)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(OUT))
    p.add_argument("--lengths", default="2,5,10,15")
    p.add_argument("--resolutions", default="1.5,2.0,2.25,2.5")
    p.add_argument("--per-cell", type=int, default=30, help="test fragments kept per cell")
    p.add_argument("--max-examples", type=int, default=400,
                   help="fragments drawn per build (about 10 %% land in the test families)")
    p.add_argument("--force", action="store_true", help="rebuild cells that already exist")
    args = p.parse_args()
    exe = str(Path(sys.executable).with_name("crysplugins"))
    for n in [int(x) for x in args.lengths.split(",")]:
        for d in [float(x) for x in args.resolutions.split(",")]:
            folder = Path(args.out) / cell_name(n, d)
            if (folder / "fragments.tsv").exists() and not args.force:
                print(f"{folder.name}: present", flush=True)
                continue
            got = build_cell(n, d, args.per_cell, args.max_examples, folder, exe)
            print(f"{folder.name}: {got} test fragments", flush=True)
            if got < 25:
                print(f"warning: {folder.name} has fewer than 25 test fragments; raise --max-examples",
                      flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
