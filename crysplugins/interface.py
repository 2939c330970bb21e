"""The common predictor interface.

Every predictor (built-in or third-party) implements :class:`Predictor`: a name, a version, a one-line
summary, the inputs it accepts (:class:`InputSpec`) and the outputs it returns (:class:`OutputSpec`), and
``predict(request) -> Prediction``.  Progress is reported through ``request.report(fraction, message)`` and
cancellation is honoured by calling ``request.check_cancelled()`` between steps.  Refiners (density
modification and the like) implement :class:`Refiner`; predictors find them in ``request.refiners``.

Inputs and outputs are crystal objects that keep their unit cell and space group:

* :class:`CrystalMap` wraps a ``gemmi.FloatGrid`` (cell, space group and grid travel with the values);
* :class:`Reflections` wraps a ``gemmi.Mtz`` plus the column labels chosen for each role (F, SIGF, PHI, ...);
* :class:`ObservedAmplitudes` is observed data parsed once (cell, space group, hkl, |F|), what refiners
  and pipelines take;
* :class:`Sequence` is a validated one-letter protein sequence;
* structures are ``gemmi.Structure``; cells ``gemmi.UnitCell``; space groups ``gemmi.SpaceGroup``;
* :class:`Scalar` is a number with a unit; :class:`Table` a small list of rows with named columns.

This module imports neither torch nor Qt.
"""
from __future__ import annotations

import enum
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Protocol, runtime_checkable

import gemmi
import numpy as np

from crysplugins.errors import Cancelled, CrysError


class Kind(str, enum.Enum):
    """What an input or output is.  The CLI and the GUI build their forms from these."""

    MAP = "map"                  # CrystalMap (CCP4/MRC file on the command line)
    REFLECTIONS = "reflections"  # Reflections (MTZ file + column labels)
    STRUCTURE = "structure"      # gemmi.Structure (PDB/mmCIF file)
    SEQUENCE = "sequence"        # Sequence (one-letter string or FASTA file)
    CELL = "cell"                # gemmi.UnitCell (a b c alpha beta gamma; Å and degrees)
    SPACEGROUP = "spacegroup"    # gemmi.SpaceGroup (Hermann-Mauguin symbol or number)
    FLOAT = "float"
    INT = "int"
    BOOL = "bool"
    CHOICE = "choice"
    TEXT = "text"
    # output-only kinds
    MASK = "mask"                # CrystalMap with values in {0, 1} (solvent = 1 unless stated)
    SCALAR = "scalar"            # Scalar
    TABLE = "table"              # Table


@dataclass(frozen=True)
class InputSpec:
    """One input a predictor accepts.

    ``name`` is also the command-line flag (``--name``, underscores become dashes).  ``unit`` is shown in
    help texts (e.g. "Å").  For REFLECTIONS, ``columns`` lists the roles the predictor reads (e.g.
    ``("F", "SIGF")`` or ``("F", "PHI", "FOM")``); roles ending in ``?`` are optional.  For CHOICE,
    ``choices`` lists the allowed values.  ``group`` names inputs of which at least one must be given
    (e.g. a map *or* reflections).
    """

    name: str
    kind: Kind
    help: str
    required: bool = False
    default: Any = None
    unit: str = ""
    columns: tuple[str, ...] = ()
    choices: tuple[str, ...] = ()
    group: str = ""
    minimum: float | None = None
    maximum: float | None = None


@dataclass(frozen=True)
class OutputSpec:
    """One output a predictor returns (``kind`` is MAP, MASK, REFLECTIONS, SCALAR or TABLE)."""

    name: str
    kind: Kind
    help: str
    unit: str = ""


# --------------------------------------------------------------------------------------------------
# Crystal objects
# --------------------------------------------------------------------------------------------------

@dataclass
class CrystalMap:
    """A map on a unit-cell grid: a ``gemmi.FloatGrid`` that carries cell, space group and grid size.

    ``grid.array`` is indexed [u, v, w] along the cell axes a, b, c.  Values are in the map's own units
    (e/Å³ for densities computed from F in electrons; arbitrary for normalised maps, see ``units``).
    """

    grid: gemmi.FloatGrid
    name: str = "map"
    units: str = ""

    @classmethod
    def from_array(cls, array: np.ndarray, cell: gemmi.UnitCell, spacegroup: gemmi.SpaceGroup | str | None,
                   name: str = "map", units: str = "") -> "CrystalMap":
        """Wrap a 3-D numpy array sampled on the whole unit cell (axes a, b, c)."""
        arr = np.ascontiguousarray(array, dtype=np.float32)
        if arr.ndim != 3:
            raise CrysError(f"A map needs a 3-D array, got {arr.ndim} dimensions.")
        grid = gemmi.FloatGrid(arr, cell)
        if spacegroup is not None:
            grid.spacegroup = spacegroup if isinstance(spacegroup, gemmi.SpaceGroup) else gemmi.SpaceGroup(spacegroup)
        else:
            grid.spacegroup = gemmi.SpaceGroup("P 1")
        return cls(grid=grid, name=name, units=units)

    @property
    def array(self) -> np.ndarray:
        return np.array(self.grid, copy=False)

    @property
    def cell(self) -> gemmi.UnitCell:
        return self.grid.unit_cell

    @property
    def spacegroup(self) -> gemmi.SpaceGroup:
        return self.grid.spacegroup

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.grid.nu, self.grid.nv, self.grid.nw)

    def spacing(self) -> tuple[float, float, float]:
        """Grid spacing along a, b, c in Å."""
        c = self.cell
        return (c.a / self.grid.nu, c.b / self.grid.nv, c.c / self.grid.nw)

    def same_grid(self, other: "CrystalMap", tol: float = 1e-3) -> bool:
        """True when both maps sample the same cell on the same grid (so voxels correspond)."""
        return self.shape == other.shape and self.cell.approx(other.cell, tol)

    def describe(self) -> dict:
        c = self.cell
        return {
            "name": self.name,
            "cell": [round(x, 4) for x in (c.a, c.b, c.c, c.alpha, c.beta, c.gamma)],
            "spacegroup": self.spacegroup.hm if self.spacegroup else "P 1",
            "grid": list(self.shape),
            "units": self.units,
        }


#: Usual MTZ labels for each column role, in order of preference (auto-selection).
COLUMN_PREFERENCES: dict[str, tuple[tuple[str, ...], str]] = {
    # role: (preferred labels, MTZ column type letters accepted)
    "F": (("FP", "F", "FOBS", "F-obs", "F_obs", "FMEAN", "F-obs-filtered", "FNAT"), "F"),
    "SIGF": (("SIGFP", "SIGF", "SIGFOBS", "SIGF-obs", "SIGF_obs", "SIGFMEAN", "SIGF-obs-filtered"), "Q"),
    "I": (("I", "IMEAN", "IOBS", "I-obs", "I_obs"), "J"),
    "SIGI": (("SIGI", "SIGIMEAN", "SIGIOBS", "SIGI-obs", "SIGI_obs"), "Q"),
    "PHI": (("PHWT", "PHIB", "PHI", "PHIC", "PHIF", "PHIFMODEL", "PHIC_ALL"), "P"),
    "FWT": (("FWT", "2FOFCWT", "FC", "FC_ALL"), "F"),
    "FOM": (("FOM", "FOMB", "W"), "W"),
}


@dataclass
class Reflections:
    """Reflection data: a ``gemmi.Mtz`` and the label chosen for each role.

    ``columns`` maps a role (``F``, ``SIGF``, ``I``, ``SIGI``, ``PHI``, ``FOM``, ``FWT``) to an MTZ label.
    ``notes`` records automatic choices ("picked FP as F") so the user is told which columns were used.
    Phases are in degrees; amplitudes in the file's units.
    """

    mtz: gemmi.Mtz
    columns: dict[str, str] = field(default_factory=dict)
    name: str = "reflections"
    notes: list[str] = field(default_factory=list)

    @property
    def cell(self) -> gemmi.UnitCell:
        return self.mtz.cell

    @property
    def spacegroup(self) -> gemmi.SpaceGroup:
        return self.mtz.spacegroup

    @property
    def d_min(self) -> float:
        """High-resolution limit in Å."""
        return float(self.mtz.resolution_high())

    def has(self, role: str) -> bool:
        return role in self.columns

    def label(self, role: str) -> str:
        if role not in self.columns:
            raise CrysError(f"The reflections have no {role} column chosen (columns: {self.available()}).")
        return self.columns[role]

    def available(self) -> str:
        return ", ".join(f"{c.label}({c.type})" for c in self.mtz.columns)

    def miller_array(self) -> np.ndarray:
        """(n, 3) int array of h, k, l."""
        return np.asarray(self.mtz.make_miller_array(), dtype=np.int32)

    def values(self, role: str) -> np.ndarray:
        """Values of the column chosen for ``role`` (float64; missing reflections are NaN)."""
        return np.asarray(self.mtz.column_with_label(self.label(role)).array, dtype=np.float64)

    def amplitudes(self) -> np.ndarray:
        """Amplitudes |F|: the F column, or sqrt(max(I, 0)) when only intensities were given."""
        if self.has("F"):
            return self.values("F")
        if self.has("I"):
            return np.sqrt(np.clip(self.values("I"), 0, None))
        raise CrysError("The reflections have neither an amplitude (F) nor an intensity (I) column.")

    def describe(self) -> dict:
        c = self.cell
        return {
            "name": self.name,
            "cell": [round(x, 4) for x in (c.a, c.b, c.c, c.alpha, c.beta, c.gamma)],
            "spacegroup": self.spacegroup.hm if self.spacegroup else None,
            "reflections": int(self.mtz.nreflections),
            "d_min": round(self.d_min, 3),
            "columns": dict(self.columns),
        }


def usable_reflections(hkl: np.ndarray, f: np.ndarray, *more: np.ndarray) -> np.ndarray:
    """Mask of the reflections fit to use: finite, non-negative amplitude ``f``, every array in ``more``
    (phases, figures of merit) finite, and not F(000), which no map synthesis or phase comparison uses."""
    hkl = np.asarray(hkl).reshape(-1, 3)
    f = np.asarray(f, dtype=np.float64)
    ok = np.isfinite(f) & (f >= 0) & np.any(hkl != 0, axis=1)
    for values in more:
        ok &= np.isfinite(np.asarray(values, dtype=np.float64))
    return ok


@dataclass(frozen=True)
class ObservedAmplitudes:
    """Observed amplitudes parsed once: cell, space group, Miller indices and |F| (and σ(F) when given).

    Only usable reflections are kept: a finite, non-negative amplitude and not F(000).  Amplitudes come
    from the F column, or sqrt(max(I, 0)) when only intensities were given (file units, usually e).
    """

    cell: gemmi.UnitCell
    spacegroup: gemmi.SpaceGroup
    hkl: np.ndarray                  # (n, 3) int64
    amplitudes: np.ndarray           # (n,) float64
    sigmas: np.ndarray | None = None  # (n,) σ(F), when the reflections had a SIGF column

    @classmethod
    def from_reflections(cls, reflections: Reflections) -> "ObservedAmplitudes":
        hkl = reflections.miller_array().astype(np.int64)
        amp = reflections.amplitudes()
        keep = usable_reflections(hkl, amp)
        sig = reflections.values("SIGF")[keep] if reflections.has("SIGF") else None
        return cls(reflections.cell, reflections.spacegroup, hkl[keep], amp[keep], sig)

    def __len__(self) -> int:
        return len(self.hkl)

    def d(self) -> np.ndarray:
        """Resolution of each reflection in Å."""
        return np.asarray(self.cell.calculate_d_array(self.hkl), dtype=np.float64)

    def within(self, d_min: float) -> "ObservedAmplitudes":
        """The reflections to ``d_min`` Å (a relative tolerance of 1e-6 keeps those exactly at the limit)."""
        keep = self.d() >= d_min * (1 - 1e-6)
        sig = None if self.sigmas is None else self.sigmas[keep]
        return ObservedAmplitudes(self.cell, self.spacegroup, self.hkl[keep], self.amplitudes[keep], sig)


#: One-letter codes of the 20 standard amino acids.
STANDARD_RESIDUES = "ACDEFGHIKLMNPQRSTVWY"


@dataclass(frozen=True)
class Sequence:
    """A protein sequence in one-letter code (20 standard residues; validated on creation)."""

    residues: str
    name: str = "sequence"

    def __post_init__(self) -> None:
        seq = "".join(self.residues.split()).upper()
        bad = sorted({ch for ch in seq if ch not in STANDARD_RESIDUES})
        if not seq:
            raise CrysError("The sequence is empty.")
        if bad:
            raise CrysError(f"The sequence contains characters that are not standard residues: {''.join(bad)}.")
        object.__setattr__(self, "residues", seq)

    def __len__(self) -> int:
        return len(self.residues)

    def three_letter(self) -> list[str]:
        return [gemmi.expand_one_letter(ch, gemmi.ResidueKind.AA) for ch in self.residues]

    def weight(self) -> float:
        """Molecular weight in Da (sum of residue weights + one water), from gemmi's residue table."""
        return float(gemmi.calculate_sequence_weight(self.three_letter()))


@dataclass(frozen=True)
class Scalar:
    """A number with its unit and, optionally, a short explanation."""

    value: float
    unit: str = ""
    help: str = ""


@dataclass
class Table:
    """A small table: column names and rows (lists of plain values)."""

    columns: list[str]
    rows: list[list[Any]]
    help: str = ""

    def as_dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row)) for row in self.rows]

    def to_tsv(self) -> str:
        lines = ["\t".join(self.columns)]
        lines += ["\t".join(_fmt(v) for v in row) for row in self.rows]
        return "\n".join(lines) + "\n"


def _fmt(v: Any) -> str:
    if v is None:  # a value that does not exist (e.g. the change from a previous map in the first row)
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


# --------------------------------------------------------------------------------------------------
# Request and prediction
# --------------------------------------------------------------------------------------------------

ProgressCallback = Callable[[float, str], None]


class CancelToken:
    """A thread-safe flag a caller sets to ask a running predictor to stop."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()


@dataclass
class Request:
    """What a caller hands to ``Predictor.predict``.

    ``inputs`` maps input names to crystal objects (already loaded, see :mod:`crysplugins.request`).
    ``progress`` is called with a fraction in [0, 1] and a short message; ``cancel`` is polled through
    :meth:`check_cancelled`.  ``refiners``: the host's registered refiners by name
    (:func:`crysplugins.request.run_prediction` fills it in), for predictors that refine their maps.
    """

    inputs: dict[str, Any] = field(default_factory=dict)
    progress: ProgressCallback | None = None
    cancel: CancelToken = field(default_factory=CancelToken)
    refiners: dict[str, "Refiner"] = field(default_factory=dict)

    def get(self, name: str, default: Any = None) -> Any:
        value = self.inputs.get(name)
        return default if value is None else value

    def require(self, name: str) -> Any:
        value = self.inputs.get(name)
        if value is None:
            raise CrysError(f"The input '{name}' is required.")
        return value

    def report(self, fraction: float, message: str = "") -> None:
        """Report progress (fraction of the work done, 0..1) and check for cancellation."""
        self.check_cancelled()
        if self.progress is not None:
            self.progress(float(min(max(fraction, 0.0), 1.0)), message)

    def check_cancelled(self) -> None:
        if self.cancel.cancelled:
            raise Cancelled("The prediction was cancelled.")


@dataclass
class Prediction:
    """What a predictor returns.  Every map keeps its cell, space group and grid."""

    maps: dict[str, CrystalMap] = field(default_factory=dict)
    reflections: dict[str, Reflections] = field(default_factory=dict)
    scalars: dict[str, Scalar] = field(default_factory=dict)
    tables: dict[str, Table] = field(default_factory=dict)
    messages: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """A JSON-serialisable summary (no map values)."""
        return {
            "maps": {k: v.describe() for k, v in self.maps.items()},
            "reflections": {k: v.describe() for k, v in self.reflections.items()},
            "scalars": {k: {"value": v.value, "unit": v.unit, "help": v.help} for k, v in self.scalars.items()},
            "tables": {k: {"columns": t.columns, "rows": t.rows} for k, t in self.tables.items()},
            "messages": list(self.messages),
            "meta": dict(self.meta),
        }


# --------------------------------------------------------------------------------------------------
# The protocol
# --------------------------------------------------------------------------------------------------

@runtime_checkable
class Predictor(Protocol):
    """What every predictor plugin provides.

    Attributes: ``name`` (lower-case, dashes; unique), ``version``, ``summary`` (one line),
    ``inputs`` and ``outputs`` (tuples of specs).  Optional attribute ``origin_arbitrary`` (bool, default
    False): True when the predictor's maps/phases may be shifted by an allowed origin or inverted in hand
    (e.g. ab initio phasing in P1), so evaluators must search origin and hand before comparing.
    Optional method ``model_card() -> dict | None`` for predictors backed by a model file.
    """

    name: str
    version: str
    summary: str
    inputs: tuple[InputSpec, ...]
    outputs: tuple[OutputSpec, ...]

    def predict(self, request: Request) -> Prediction: ...


class RefineOutcome(Protocol):
    """What a refiner returns (e.g. :class:`crysplugins.crystal.refine.RefineResult`): the refined map,
    the observed reflections it used (``hkl``, ``amplitudes``) with their refined ``phases`` (degrees), a
    success ``score`` (higher is better) and whether that counts as ``refined``."""

    map: CrystalMap
    hkl: np.ndarray
    amplitudes: np.ndarray
    phases: np.ndarray
    score: float
    refined: bool


@runtime_checkable
class Refiner(Protocol):
    """What every refiner plugin provides (registered through ``register_refiners``).

    ``refine(map, observed, **options)`` improves the phases of a starting map (or of starting
    ``phases=``) against observed amplitudes: ``observed`` is :class:`Reflections` or
    :class:`ObservedAmplitudes`.  Options every refiner understands: ``cycles``, ``sequence`` and
    ``solvent_fraction``; others it may ignore.
    """

    name: str
    summary: str

    def refine(self, cmap: CrystalMap | None, observed: Reflections | ObservedAmplitudes,
               **options: Any) -> RefineOutcome: ...


def validate_refiner(obj: Any) -> list[str]:
    """Return the problems that stop ``obj`` from being a usable refiner (empty when fine)."""
    problems = []
    name = getattr(obj, "name", None)
    if not isinstance(name, str) or not name:
        problems.append("'name' must be a non-empty string")
    if not callable(getattr(obj, "refine", None)):
        problems.append("'refine' must be callable")
    return problems


def validate_predictor(obj: Any) -> list[str]:
    """Return a list of problems that stop ``obj`` from being a usable predictor (empty when fine)."""
    problems = []
    for attr, typ in (("name", str), ("version", str), ("summary", str)):
        value = getattr(obj, attr, None)
        if not isinstance(value, typ) or not value:
            problems.append(f"'{attr}' must be a non-empty string")
    name = getattr(obj, "name", "")
    if isinstance(name, str) and name and not all(ch.isalnum() or ch in "-_." for ch in name):
        problems.append("'name' may hold letters, digits, '-', '_' and '.' only")
    for attr, spec_type in (("inputs", InputSpec), ("outputs", OutputSpec)):
        specs = getattr(obj, attr, None)
        if not isinstance(specs, (tuple, list)) or not all(isinstance(s, spec_type) for s in specs):
            problems.append(f"'{attr}' must be a tuple of {spec_type.__name__}")
        elif len({s.name for s in specs}) != len(specs):
            problems.append(f"'{attr}' has duplicate names")
    if not callable(getattr(obj, "predict", None)):
        problems.append("'predict' must be callable")
    return problems


def missing_input(predictor: Predictor, inputs: Mapping[str, Any]) -> InputSpec | list[str] | None:
    """The first required input not given (its spec), else the input names of the first group with no member
    given, else None; an input given as None counts as not given."""
    given = {k for k, v in inputs.items() if v is not None}
    for spec in predictor.inputs:
        if spec.required and spec.name not in given:
            return spec
    groups: dict[str, list[str]] = {}
    for spec in predictor.inputs:
        if spec.group:
            groups.setdefault(spec.group, []).append(spec.name)
    return next((names for names in groups.values() if not given.intersection(names)), None)


def check_request(predictor: Predictor, inputs: Mapping[str, Any]) -> None:
    """Raise CrysError when a required input is missing or an input group has no member given."""
    missing = missing_input(predictor, inputs)
    if isinstance(missing, InputSpec):
        raise CrysError(f"{predictor.name} needs the input '{missing.name}' ({missing.help}).")
    if missing:
        raise CrysError(f"{predictor.name} needs one of: {', '.join(missing)}.")
    unknown = {k for k, v in inputs.items() if v is not None} - {s.name for s in predictor.inputs}
    if unknown:
        raise CrysError(f"{predictor.name} does not take the input(s): {', '.join(sorted(unknown))}.")
