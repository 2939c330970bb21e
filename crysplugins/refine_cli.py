"""``crysplugins refine``: density-modify a map against observed amplitudes with a registered refiner.

    crysplugins refine --map start.ccp4 --reflections data.mtz --sequence SEQ --out DIR [--overwrite]
                       [--refiner density-modification|shelxe] [--cycles N] [--mask MASK.ccp4]
                       [--solvent-fraction X] [--mode flatten|flip] [--reflections-columns F=FP]

For predicted fragment maps (no figures of merit).  Experimental phases of ordinary crystals (PHIB/FOM or
HL coefficients) go through ``crysplugins density-modify``, the density-modification engine.

(``--mtz`` and ``--columns`` are the older spellings of ``--reflections`` and ``--reflections-columns``.)

Writes ``DIR/refined.ccp4`` (map), ``DIR/refined.mtz`` (F, PHI, FOM) and ``DIR/refine.json`` (score,
refined, settings, per-cycle history), each atomically.  See :mod:`crysplugins.crystal.refine`.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from crysplugins.crystal import io
from crysplugins.errors import CrysError
from crysplugins.host import default_host
from crysplugins.inputs import parse_columns
from crysplugins.request import json_text, prepare_output_folder


def add_parser(sub) -> None:  # type: ignore[no-untyped-def]
    p = sub.add_parser("refine", help="density-modify a map against observed amplitudes",
                       description=__doc__.splitlines()[0].replace("``", ""))
    p.add_argument("--map", required=True, help="starting map (CCP4/MRC, whole cell)")
    mtz = p.add_mutually_exclusive_group(required=True)  # required, with the old spelling hidden
    mtz.add_argument("--reflections", dest="mtz", metavar="MTZ",
                     help="MTZ with observed amplitudes F (or intensities I)")
    mtz.add_argument("--mtz", dest="mtz", help=argparse.SUPPRESS)
    columns = p.add_mutually_exclusive_group()
    columns.add_argument("--reflections-columns", dest="columns", metavar="ROLE=LABEL,...",
                         help="MTZ columns, e.g. F=FP (default: picked automatically)")
    columns.add_argument("--columns", dest="columns", help=argparse.SUPPRESS)
    p.add_argument("--sequence", default=None, help="sequence (one-letter string or FASTA file): sizes the envelope")
    p.add_argument("--solvent-fraction", type=float, default=None, help="solvent fraction (instead of --sequence)")
    p.add_argument("--mask", default=None, help="solvent mask map (solvent = 1), e.g. from a mask predictor")
    p.add_argument("--refiner", default="density-modification", help="registered refiner (default density-modification)")
    p.add_argument("--cycles", type=int, default=200, help="number of cycles (default 200)")
    p.add_argument("--mode", choices=("flatten", "flip"), default="flatten", help="solvent flattening or flipping")
    p.add_argument("--out", required=True, help="new (or empty) output folder")
    p.add_argument("--overwrite", action="store_true", help="replace the files of an earlier run in --out")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    prepare_output_folder(args.out, args.overwrite)
    host = default_host()
    refiner = host.get_refiner(args.refiner)
    cmap = io.read_map(args.map)
    refl = io.read_mtz(args.mtz, columns=parse_columns(args.columns), need=("F|I",),
                       columns_flag="--reflections-columns")
    sequence = io.read_sequence(args.sequence) if args.sequence else None
    mask = io.read_map(args.mask) if args.mask else None
    if args.solvent_fraction is not None and not 0 < args.solvent_fraction < 1:
        raise CrysError(f"--solvent-fraction must be between 0 and 1, not {args.solvent_fraction}.")
    options = {"solvent_fraction": args.solvent_fraction, "sequence": sequence, "cycles": args.cycles}
    if args.refiner == "density-modification":
        options.update(mask=mask, mode=args.mode)
    elif mask is not None:
        raise CrysError(f"The refiner '{args.refiner}' does not take a mask.")
    result = refiner.refine(cmap, refl, **options)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    files = {"map": str(io.write_map(result.map, out / "refined.ccp4")),
             "mtz": str(io.write_mtz(result.reflections().mtz, out / "refined.mtz"))}
    summary = {"refiner": args.refiner, "score": result.score, "refined": result.refined,
               "info": result.info, "files": files, "history": result.history}
    with io.atomic_path(out / "refine.json") as tmp:
        tmp.write_text(json_text(summary))
    if args.json:
        print(json_text(summary))
    else:
        for m in refl.notes + result.info.get("messages", []):
            print(m)
        print(f"{args.refiner}: score {result.score:.4f} ({'refined' if result.refined else 'not refined'}); "
              f"wrote {files['map']} and {files['mtz']}")
    return 0
