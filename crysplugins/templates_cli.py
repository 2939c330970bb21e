"""``crysplugins dataset templates RUN_DIR --data DIR``: the command that builds recycling templates.

The template builder (:mod:`crysplugins.datasets.templates`) takes any model runner; this command picks it:
an exported ONNX model, or a training run's torch checkpoint (:func:`crysplugins.training.runner.load_runner`,
which imports torch only for a checkpoint).  It sits with the other commands because it joins the dataset
floor to the training floor.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from crysplugins.datasets.templates import REFINED_RULES, build_templates
from crysplugins.errors import CrysError
from crysplugins.training.runner import load_runner


def add_parser(dsub) -> None:
    """Register ``crysplugins dataset templates`` (called by :mod:`crysplugins.datasets.cli`)."""
    p = dsub.add_parser("templates", help="recycling templates: predict, refine and post-process every example "
                                          "(paper 000, section 4, appendix E)")
    p.add_argument("run_dir", nargs="?", help="the previous training run folder (checkpoint or exported .onnx)")
    p.add_argument("--data", required=True, help="dataset folder (templates go to DATA/templates/NAME/)")
    p.add_argument("--onnx", help="an exported ONNX model instead of the run folder")
    p.add_argument("--name", help="template set name (default: the run folder's or ONNX file's name)")
    p.add_argument("--cycles", type=int, default=50, help="density-modification cycles per example (default 50)")
    p.add_argument("--fraction", type=float, default=1.0,
                   help="process a reproducible random fraction of each shard (default 1: every example)")
    p.add_argument("--test-fraction", type=float, help="the same for test shards (default: --fraction)")
    p.add_argument("--splits", nargs="+", default=["train", "test"], choices=["train", "test"])
    p.add_argument("--input-templates", help="for a two-channel (recycled) model: the template set it takes")
    p.add_argument("--refined-rule", choices=REFINED_RULES, default="refiner",
                   help="what counts as refined: the refiner's score (default) or, on synthetic data, refined "
                        "phases within --max-phase-error of the truth (an oracle label; say so in results)")
    p.add_argument("--max-phase-error", type=float, default=60.0, help="degrees, for --refined-rule phase-error")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--chunk", type=int, default=64, help="examples per resumable part file (default 64)")
    p.add_argument("--workers", type=int, default=1, help="refinement processes (default 1)")
    p.add_argument("--threads", type=int, default=1, help="model inference threads (default 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_templates)


def cmd_templates(args: argparse.Namespace) -> int:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if args.workers < 1 or args.batch_size < 1 or args.chunk < 1:
        raise CrysError("--workers, --batch-size and --chunk must be at least 1.")
    runner = load_runner(args.run_dir, args.onnx, args.threads)
    name = args.name or (Path(args.onnx).stem if args.onnx else Path(args.run_dir).resolve().name)
    prog = None if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    summary = build_templates(args.data, runner, name, cycles=args.cycles, fraction=args.fraction,
                              splits=tuple(args.splits), batch_size=args.batch_size, chunk=args.chunk,
                              workers=args.workers, seed=args.seed, input_templates=args.input_templates,
                              progress=prog, test_fraction=args.test_fraction, refined_rule=args.refined_rule,
                              max_phase_error=args.max_phase_error)
    json.dump(summary, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0
