"""Turn raw user values (command-line strings, GUI fields) into the crystal objects predictors take.

One function, :func:`load_input`, used by the CLI and the GUI alike, so both accept the same things.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

from crysplugins.crystal import io
from crysplugins.errors import CrysError
from crysplugins.interface import InputSpec, Kind


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


def load_input(spec: InputSpec, raw: Any, columns: Mapping[str, str] | None = None) -> Any:
    """Convert ``raw`` (usually a string) for ``spec``; objects of the right kind pass through."""
    if raw is None or (isinstance(raw, str) and raw.strip() == ""):
        return None
    if not isinstance(raw, str):
        return raw  # already an object (GUI or Python callers)
    kind = spec.kind
    if kind is Kind.MAP:
        return io.read_map(raw)
    if kind is Kind.REFLECTIONS:
        required = tuple(r for r in spec.columns if not r.endswith("?"))
        optional = tuple(r[:-1] for r in spec.columns if r.endswith("?"))
        return io.read_mtz(raw, columns=columns, need=required, want=optional)
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
            raise CrysError(f"--{_flag(spec)} must be a number, not '{raw}'.") from None
        if not math.isfinite(value):  # NaN slips through every range comparison below
            raise CrysError(f"--{_flag(spec)} must be a finite number, not '{raw}'.")
        if spec.minimum is not None and value < spec.minimum:
            raise CrysError(f"--{_flag(spec)} must be at least {spec.minimum:g}{_unit(spec)}, not {raw}.")
        if spec.maximum is not None and value > spec.maximum:
            raise CrysError(f"--{_flag(spec)} must be at most {spec.maximum:g}{_unit(spec)}, not {raw}.")
        return value
    if kind is Kind.BOOL:
        low = raw.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise CrysError(f"--{_flag(spec)} must be yes or no, not '{raw}'.")
    if kind is Kind.CHOICE:
        if raw not in spec.choices:
            raise CrysError(f"--{_flag(spec)} must be one of {', '.join(spec.choices)}, not '{raw}'.")
        return raw
    return raw


def _flag(spec: InputSpec) -> str:
    return spec.name.replace("_", "-")


def _unit(spec: InputSpec) -> str:
    return f" {spec.unit}" if spec.unit else ""
