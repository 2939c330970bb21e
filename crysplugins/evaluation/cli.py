"""``crysplugins evaluate``: several predictors, one set of test files, one table.

    crysplugins evaluate --predictor charge-flipping --predictor patterson-density:cycles=1 \\
        (--mtz-dir DIR | --dataset DIR [--split test]) [--limit N] [--then-refine density-modification] \\
        [--origin declared|always|never] --out DIR

``--mtz-dir`` holds pairs ``<id>_amplitudes.mtz`` + ``<id>_phases.mtz`` (and optionally ``<id>.seq``);
``--dataset`` reads a dataset folder's split and its ``test_mtz/``.  A predictor label may carry extra
inputs after a colon (``NAME:key=value,key=value``; keys are the predictor's input names or flags).
``--then-refine REFINER`` also refines every prediction with a registered refiner and reports it as
``<predictor> + <refiner>`` (prediction plus refinement time).  Writes
``results.json``, ``summary.tsv``, ``summary.md`` and ``shells.png`` (when matplotlib is installed) to
``--out``; see :mod:`crysplugins.evaluation.compare`.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from crysplugins.errors import CrysError
from crysplugins.evaluation import compare
from crysplugins.host import default_host
from crysplugins.request import prepare_output_folder


def add_parser(sub) -> None:  # type: ignore[no-untyped-def]
    p = sub.add_parser("evaluate", help="evaluate predictors against true phases/maps",
                       description=__doc__.splitlines()[0].replace("``", ""))
    p.add_argument("--predictor", action="append", required=True, metavar="NAME[:key=value,...]",
                   help="predictor to evaluate (repeat for several); extra inputs after a colon")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--mtz-dir", help="folder of <id>_amplitudes.mtz + <id>_phases.mtz pairs")
    src.add_argument("--dataset", help="dataset folder (uses its test_mtz/)")
    p.add_argument("--split", default="test", help="dataset split (default test)")
    p.add_argument("--limit", type=int, default=None, help="evaluate at most N examples")
    p.add_argument("--out", required=True, help="new (or empty) output folder")
    p.add_argument("--overwrite", action="store_true", help="replace the files of an earlier run in --out")
    p.add_argument("--then-refine", action="append", default=[], metavar="REFINER",
                   help="also refine every prediction with this registered refiner (e.g. density-modification) "
                        "and report it as '<predictor> + <refiner>'; repeat for several")
    p.add_argument("--origin", choices=("declared", "always", "never"), default="declared",
                   help="search origin/hand for predictors that declare origin_arbitrary (default), all, or none")
    p.add_argument("--quiet", "-q", action="store_true", help="no per-example lines")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.limit is not None and args.limit < 1:
        raise CrysError("--limit must be at least 1.")
    prepare_output_folder(args.out, args.overwrite)
    labels = [compare.PredictorLabel.parse(t) for t in args.predictor]
    host = default_host()
    for label in labels:
        host.get(label.name)  # unknown names fail before any work
    for name in args.then_refine:
        host.get_refiner(name)
    if args.mtz_dir:
        examples = compare.examples_from_mtz_dir(args.mtz_dir, args.limit)
        source = {"mtz_dir": str(args.mtz_dir)}
    else:
        examples = compare.examples_from_dataset(args.dataset, args.split, args.limit)
        source = {"dataset": str(args.dataset), "split": args.split}
    say = None if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    t0 = time.monotonic()
    records = compare.evaluate(host, labels, examples, progress=say, origin=args.origin,
                               refiners=args.then_refine)
    rows = compare.summarise(records)
    meta = {"predictors": [l.label for l in labels], "refiners": list(args.then_refine),
            "examples": len(examples), **source,
            "success_cutoff_degrees": compare.SUCCESS_CUTOFF, "origin": args.origin, "seconds": round(time.monotonic() - t0, 2)}
    files = compare.write_results(Path(args.out), records, rows, meta)
    print(compare.table_text(rows), end="")
    if "png" not in files:
        print("note: matplotlib is not installed, so no plot was written.")
    for kind, path in files.items():
        print(f"wrote {kind}: {path}")
    return 0
