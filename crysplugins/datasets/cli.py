"""``crysplugins dataset ...``: build training datasets from PDB/mmCIF structures.

``crysplugins dataset build --structures DIR --out DIR --residues 15 --overlap 5 --d-min 1.5 --rate 3.0``
(see ``--help``).  Further ``dataset`` subcommands (``templates`` for the recycling work) register
themselves in :data:`SUBCOMMANDS` as ``name -> "module:add_parser"``.
"""
from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys

from crysplugins.crystal.io import parse_cell
from crysplugins.datasets.build import BuildConfig, build
from crysplugins.errors import CrysError

#: further ``dataset`` subcommands: name -> "module" whose ``add_parser(subparsers)`` registers them
SUBCOMMANDS: dict[str, str] = {"templates": "crysplugins.templates_cli"}


def _shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not i/n (e.g. 0/4)") from None
    if n < 1 or not 0 <= i < n:
        raise argparse.ArgumentTypeError(f"'{text}': need 0 <= i < n")
    return i, n


def add_parser(sub) -> None:
    p = sub.add_parser("dataset", help="build training datasets from PDB/mmCIF structures")
    dsub = p.add_subparsers(dest="dataset_command", metavar="COMMAND")
    dsub.required = True
    b = dsub.add_parser("build", help="Patterson/density pairs of N-residue fragments (paper 000, appendix B)")
    b.add_argument("--structures", required=True, help="folder of PDB/mmCIF files (searched recursively)")
    b.add_argument("--out", required=True, help="output dataset folder (resumable)")
    b.add_argument("--manifest", help="MANIFEST.tsv with id and family_cluster (default: next to --structures)")
    b.add_argument("--residues", type=int, default=15, help="fragment length N (default 15)")
    b.add_argument("--lengths", type=int, nargs=2, metavar=("LO", "HI"),
                   help="every fragment length from LO to HI residues, an equal share each with --max-examples "
                        "(instead of --residues)")
    b.add_argument("--patterson-norm", choices=("global", "per_map"), default="global",
                   help="Patterson scaling: one dataset-wide constant, or each map by its origin peak "
                        "(default global; per_map suits datasets that mix lengths)")
    b.add_argument("--overlap", type=int, default=5, help="max residues shared by consecutive fragments (5)")
    g = b.add_mutually_exclusive_group()
    g.add_argument("--d-min", type=float, default=1.5, help="resolution in Å (default 1.5)")
    g.add_argument("--d-min-range", type=float, nargs=2, metavar=("LO", "HI"),
                   help="draw d_min per example uniformly in [LO, HI] Å (paper: 1.6 2.25)")
    g2 = b.add_mutually_exclusive_group()
    g2.add_argument("--rate", type=float, default=3.0, help="sampling rate d_min/spacing (default 3.0)")
    g2.add_argument("--rate-range", type=float, nargs=2, metavar=("LO", "HI"),
                    help="draw the rate per example (paper: 2.305 2.745)")
    b.add_argument("--fixed-cell", type=float, nargs=6, metavar=("A", "B", "C", "AL", "BE", "GA"),
                   help="one cell for every example (Å, degrees); clashing fragments are dropped")
    b.add_argument("--grid-multiple", type=int, default=8,
                   help="map sizes are multiples of this (cells grow to whole bins; default 8)")
    b.add_argument("--max-grid", type=int, help="drop examples whose map exceeds this many voxels on an axis")
    b.add_argument("--test-fraction", type=float, default=0.1, help="fraction of examples (by family) in test")
    b.add_argument("--max-examples", type=int, help="draw at most this many fragments at random")
    b.add_argument("--dtype", choices=("float16", "float32"), default="float16")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--shard-size", type=int, default=512, help="examples per output shard file")
    b.add_argument("--min-bin-size", type=int, default=1,
                   help="drop training map-shape bins with fewer examples (paper: the minimum batch size)")
    b.add_argument("--no-test-mtz", action="store_true", help="do not write test-example MTZ files")
    b.add_argument("--workers", type=int, default=1, help="processes (default 1)")
    b.add_argument("--shard", type=_shard, default=(0, 1), metavar="I/N",
                   help="build only part I of N (cluster array jobs); rerun without it to finalise")
    b.add_argument("--keep-parts", action="store_true", help="keep the per-structure intermediate files")
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    b.set_defaults(func=cmd_build)
    for name, module in SUBCOMMANDS.items():
        try:
            mod = importlib.import_module(module)
        except Exception as exc:  # a broken optional subcommand must not take `dataset build` down
            logging.getLogger("crysplugins.dataset").debug("dataset %s unavailable: %s", name, exc)
            continue
        mod.add_parser(dsub)


def cmd_build(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    if args.residues < 1:
        raise CrysError("--residues must be at least 1.")
    if args.lengths and not 1 <= args.lengths[0] <= args.lengths[1]:
        raise CrysError("--lengths needs 1 <= LO <= HI residues.")
    if args.overlap < 0:
        raise CrysError("--overlap must be 0 or more.")
    if args.workers < 1:
        raise CrysError("--workers must be at least 1.")
    if not 0 <= args.test_fraction < 1:
        raise CrysError("--test-fraction must be in [0, 1).")
    for name, rng in (("--d-min-range", args.d_min_range), ("--rate-range", args.rate_range)):
        if rng and not 0 < rng[0] <= rng[1]:
            raise CrysError(f"{name} needs 0 < LO <= HI.")
    if args.d_min <= 0 or args.rate <= 1:
        raise CrysError("--d-min must be > 0 Å and --rate > 1 (the grid must hold every reflection).")
    if args.fixed_cell:
        parse_cell(" ".join(map(str, args.fixed_cell)))
    cfg = BuildConfig(
        structures=args.structures, out=args.out, n_residues=args.residues, overlap=args.overlap,
        lengths=tuple(args.lengths) if args.lengths else None, patterson_norm=args.patterson_norm,
        d_min=args.d_min, d_min_range=tuple(args.d_min_range) if args.d_min_range else None,
        rate=args.rate, rate_range=tuple(args.rate_range) if args.rate_range else None,
        fixed_cell=tuple(args.fixed_cell) if args.fixed_cell else None, grid_multiple=args.grid_multiple,
        max_grid=args.max_grid, test_fraction=args.test_fraction, max_examples=args.max_examples,
        dtype=args.dtype, seed=args.seed, manifest=args.manifest, shard_size=args.shard_size,
        test_mtz=not args.no_test_mtz, min_bin_size=args.min_bin_size, workers=args.workers,
        shard=args.shard, progress=not args.quiet, keep_parts=args.keep_parts)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    summary = build(cfg)
    json.dump(summary, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
    return 0 if summary.get("status") in ("done", "already built", "partial") else 1
