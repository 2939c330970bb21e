"""Turn raw user values (command-line strings, GUI fields) into the crystal objects predictors take.

One function, :func:`load_input`, used by the CLI and the GUI alike, so both accept the same things.
:func:`input_flags` names each input's command-line flag in one vocabulary across predictors: every MTZ
is ``--reflections`` (columns ``--reflections-columns``), every density map ``--map``, every resolution
``--resolution``; an input declared under another name keeps that name as a hidden alias.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

from crysplugins.crystal import io
from crysplugins.errors import CrysError
from crysplugins.interface import CrystalMap, InputSpec, Kind

#: FLOAT inputs that are a high-resolution limit in Å: their flag is --resolution
RESOLUTION_NAMES = ("resolution", "d_min", "dmin", "high_resolution")
#: words in a MAP input's name that say it is not a density map: such an input keeps its own flag
SPECIAL_MAP_WORDS = ("patterson", "mask", "difference")


def own_flag(spec: InputSpec) -> str:
    """The flag spelled from the input's name: 'solvent_fraction' -> 'solvent-fraction' (no dashes in front)."""
    return spec.name.replace("_", "-")


def _vocabulary_flag(spec: InputSpec) -> str:
    if spec.kind is Kind.REFLECTIONS:
        return "reflections"
    if spec.kind is Kind.MAP and not any(w in spec.name.lower() for w in SPECIAL_MAP_WORDS):
        return "map"
    if spec.kind is Kind.FLOAT and spec.name.lower() in RESOLUTION_NAMES:
        return "resolution"
    return own_flag(spec)


def input_flags(inputs: Sequence[InputSpec]) -> dict[str, str]:
    """{input name: flag without dashes} for a predictor's inputs, in the shared vocabulary.

    A vocabulary flag two inputs would share (two MTZ inputs, say) is given to neither: both keep their
    own names, so a flag always means one input."""
    wanted = {spec.name: _vocabulary_flag(spec) for spec in inputs}
    own = {spec.name: own_flag(spec) for spec in inputs}
    taken = list(wanted.values())
    return {name: flag if taken.count(flag) == 1 and (flag == own[name] or flag not in own.values())
            else own[name] for name, flag in wanted.items()}


def input_name(inputs: Sequence[InputSpec], key: str) -> str | None:
    """The input a user's key names: its name ('d_min'), its own flag ('d-min') or its flag in the shared
    vocabulary ('resolution'); None when no input has that key."""
    key = key.strip().lstrip("-")
    flags = input_flags(inputs)
    for spec in inputs:
        if key in (spec.name, own_flag(spec), flags[spec.name], flags[spec.name].replace("-", "_")):
            return spec.name
    return None


def columns_flag(flag: str) -> str:
    """The column-choice flag that goes with a REFLECTIONS (or map-from-MTZ) input's flag."""
    return f"{flag}-columns"


def parse_columns(text: str | None) -> dict[str, str]:
    """'F=FP,SIGF=SIGFP,PHI=PHWT' -> {'F': 'FP', 'SIGF': 'SIGFP', 'PHI': 'PHWT'}."""
    if not text:
        return {}
    out = {}
    for part in text.split(","):
        if not part.strip():
            continue
        if "=" not in part:
            raise CrysError(f"'{part}' is not a column choice; write ROLE=LABEL, e.g. F=FP,PHI=PHWT.")
        role, label = (s.strip() for s in part.split("=", 1))
        out[role.upper()] = label
    return out


def load_input(spec: InputSpec, raw: Any, columns: Mapping[str, str] | None = None,
               flag: str | None = None) -> Any:
    """Convert ``raw`` (usually a string) for ``spec``; objects of the right kind pass through.

    ``flag`` is the input's command-line flag without dashes (default: from its name), used in messages.
    A MAP input also takes an MTZ file of map coefficients (see :func:`map_from_mtz`)."""
    if raw is None or (isinstance(raw, str) and raw.strip() == ""):
        return None
    if not isinstance(raw, str):
        return raw  # already an object (GUI or Python callers)
    kind = spec.kind
    flag = flag or own_flag(spec)
    if kind is Kind.MAP:
        if io.is_mtz_file(raw):
            return map_from_mtz(raw, columns, f"--{columns_flag(flag)}")
        return io.read_map(raw)
    if kind is Kind.REFLECTIONS:
        required = tuple(r for r in spec.columns if not r.endswith("?"))
        optional = tuple(r[:-1] for r in spec.columns if r.endswith("?"))
        return io.read_mtz(raw, columns=columns, need=required, want=optional,
                           columns_flag=f"--{columns_flag(flag)}")
    if kind is Kind.STRUCTURE:
        return io.read_structure(raw)
    if kind is Kind.SEQUENCE:
        return io.read_sequence(raw)
    if kind is Kind.CELL:
        return io.parse_cell(raw)
    if kind is Kind.SPACEGROUP:
        return io.parse_spacegroup(raw)
    if kind in (Kind.FLOAT, Kind.INT):
        try:
            value: float | int = int(raw) if kind is Kind.INT else float(raw)
        except ValueError:
            raise CrysError(f"--{flag} must be a number, not '{raw}'.") from None
        if not math.isfinite(value):  # NaN slips through every range comparison below
            raise CrysError(f"--{flag} must be a finite number, not '{raw}'.")
        if spec.minimum is not None and value < spec.minimum:
            raise CrysError(f"--{flag} must be at least {spec.minimum:g}{_unit(spec)}, not {raw}.")
        if spec.maximum is not None and value > spec.maximum:
            raise CrysError(f"--{flag} must be at most {spec.maximum:g}{_unit(spec)}, not {raw}.")
        return value
    if kind is Kind.BOOL:
        low = raw.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise CrysError(f"--{flag} must be yes or no, not '{raw}'.")
    if kind is Kind.CHOICE:
        if raw not in spec.choices:
            raise CrysError(f"--{flag} must be one of {', '.join(spec.choices)}, not '{raw}'.")
        return raw
    return raw


def map_from_mtz(path: str, columns: Mapping[str, str] | None = None,
                 hint: str = "--columns", sample_rate: float = 3.0) -> CrystalMap:
    """The map of an MTZ file's coefficients (e.g. FWT/PHWT, or FP/PHIB weighted by FOM), grid spacing
    d_min / ``sample_rate`` Å.  The map also carries ``notes`` (the column choice, for the user) and
    ``d_min`` (the data's high-resolution limit in Å, which the grid alone does not tell)."""
    refl = io.read_mtz(path, columns=columns, need=("F", "PHI"), want=("FOM",), columns_flag=hint)
    coefficients = refl.amplitudes() * (refl.values("FOM") if refl.has("FOM") else 1.0)
    mtz = io.make_mtz(refl.cell, refl.spacegroup, refl.miller_array(),
                      {"FMAP": ("F", coefficients), "PHMAP": ("P", refl.values("PHI"))})
    grid = mtz.transform_f_phi_to_map("FMAP", "PHMAP", sample_rate=sample_rate)
    picked = ", ".join(f"{role}={label}" for role, label in refl.columns.items())
    cmap = CrystalMap(grid=grid, name=refl.name, units="")
    cmap.d_min = refl.d_min  # type: ignore[attr-defined]
    cmap.notes = list(refl.notes) + [f"map of {refl.name} from {picked} to {refl.d_min:.2f} Å, grid "  # type: ignore[attr-defined]
                                     f"{[grid.nu, grid.nv, grid.nw]}"]
    return cmap


def _unit(spec: InputSpec) -> str:
    return f" {spec.unit}" if spec.unit else ""
