"""Crystallographic file I/O on gemmi: CCP4/MRC maps, MTZ reflections, PDB/mmCIF structures.

Every reader turns a user's mistake (missing file, empty file, wrong format, truncated data, absent
column) into a :class:`~crysplugins.errors.CrysError` with one clear sentence.  Writers are atomic: they
write a temporary file in the destination folder and rename it, so no half-written file is ever left.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator, Mapping

import gemmi
import numpy as np

from crysplugins.errors import CrysError
from crysplugins.interface import COLUMN_PREFERENCES, CrystalMap, Reflections, Sequence
from crysplugins.validate import exists_quietly, os_reason

PathLike = str | os.PathLike


def _existing_file(path: PathLike, what: str) -> Path:
    p = Path(path)
    try:
        if not p.exists():
            raise CrysError(f"The {what} file {p} does not exist.")
        if p.is_dir():
            raise CrysError(f"{p} is a folder, not a {what} file.")
        if p.stat().st_size == 0:
            raise CrysError(f"The {what} file {p} is empty.")
        if not os.access(p, os.R_OK):
            raise CrysError(f"The {what} file {p} cannot be read (permission denied).")
    except OSError as exc:  # a name too long, a folder that cannot be searched...
        raise CrysError(f"The {what} file {str(p)[:80]} cannot be opened ({os_reason(exc)}).") from None
    return p


# --------------------------------------------------------------------------------------------- maps

def read_map(path: PathLike, name: str | None = None) -> CrystalMap:
    """Read a CCP4/MRC map and expand it to the whole unit cell (symmetry applied by gemmi).

    The 1024-byte header is checked field by field before gemmi reads the file (:func:`check_ccp4_header`),
    because gemmi trusts it (a grid sampling of 0 divides by zero and kills the process).  Voxels that
    are NaN or infinite are refused.  Maps that cover only part of the cell (a box around a model) are
    refused: predictors work on the periodic unit cell.
    """
    p = _existing_file(path, "map")
    check_ccp4_header(p)
    try:
        ccp4 = gemmi.read_ccp4_map(str(p))
    except Exception as exc:
        raise CrysError(f"{p} is not a readable CCP4/MRC map ({_short(exc)}).") from None
    raw = np.array(ccp4.grid, copy=False)
    bad = int(np.count_nonzero(~np.isfinite(raw)))
    if bad:
        raise CrysError(f"The map {p} holds {bad} NaN or infinite values out of {raw.size}; "
                        f"it cannot be used.")
    try:
        ccp4.setup(float("nan"))
    except Exception as exc:
        raise CrysError(f"{p} is not a usable CCP4/MRC map ({_short(exc)}).") from None
    arr = np.array(ccp4.grid, copy=False)
    if arr.size == 0 or min(arr.shape) < 2:
        raise CrysError(f"The map {p} has an empty or degenerate grid {arr.shape}.")
    if np.isnan(arr).any():
        covered = 1.0 - float(np.isnan(arr).mean())
        raise CrysError(f"The map {p} covers only {_percent_floor(covered)} of the unit cell; "
                        f"export the whole cell.")
    cell = ccp4.grid.unit_cell
    if cell.volume <= 0 or not np.isfinite(cell.volume):
        raise CrysError(f"The map {p} has an invalid unit cell.")
    return CrystalMap(grid=ccp4.grid, name=name or p.stem)


#: bytes per voxel of the CCP4/MRC modes gemmi reads into a real-valued grid
_CCP4_MODE_BYTES = {0: 1, 1: 2, 2: 4, 6: 2, 12: 2}
#: the largest whole-cell grid read (voxels; 2**28 float32 values are 1 GiB)
MAX_MAP_VOXELS = 2 ** 28


def check_ccp4_header(path: PathLike) -> None:
    """Check every CCP4/MRC header field gemmi relies on; raise CrysError with one sentence otherwise.

    Fields (1-based words of the 256-word header): 1-3 NC/NR/NS (grid points in the file), 4 MODE,
    8-10 MX/MY/MZ (grid sampling of the cell), 11-16 cell (Å, degrees), 17-19 MAPC/MAPR/MAPS (axis
    order), 23 ISPG, 24 NSYMBT (bytes of symmetry records), 53 'MAP ', 54 machine stamp (byte order).
    The file must be at least as long as header + symmetry + data.
    """
    p = Path(path)
    size = p.stat().st_size
    with open(p, "rb") as fh:
        head = fh.read(1024)
    if len(head) < 1024:
        raise CrysError(f"{p} is not a readable CCP4/MRC map (only {size} bytes; the header alone is 1024).")
    if head[208:212] != b"MAP ":
        raise CrysError(f"{p} is not a readable CCP4/MRC map (no 'MAP ' tag at byte 208).")
    order = ">" if head[212] == 0x11 else "<"
    ints = np.frombuffer(head, dtype=f"{order}i4")
    floats = np.frombuffer(head, dtype=f"{order}f4")
    nc, nr, ns, mode = (int(x) for x in ints[0:4])
    mx, my, mz = (int(x) for x in ints[7:10])
    axes = [int(x) for x in ints[16:19]]
    ispg, nsymbt = int(ints[22]), int(ints[23])
    if mode not in _CCP4_MODE_BYTES:
        raise CrysError(f"{p} has map mode {mode}; only real-valued modes "
                        f"{', '.join(map(str, _CCP4_MODE_BYTES))} can be read.")
    if min(nc, nr, ns) < 1:
        raise CrysError(f"{p} has an invalid grid size in its header ({nc} x {nr} x {ns} points).")
    if min(mx, my, mz) < 1:
        raise CrysError(f"{p} has an invalid grid sampling of the cell in its header "
                        f"(MX, MY, MZ = {mx}, {my}, {mz}; each must be at least 1).")
    if mx * my * mz > MAX_MAP_VOXELS or nc * nr * ns > MAX_MAP_VOXELS:
        raise CrysError(f"{p} declares a grid of more than {MAX_MAP_VOXELS} points; it is too large to read.")
    if sorted(axes) != [1, 2, 3]:
        raise CrysError(f"{p} has an invalid axis order in its header (MAPC, MAPR, MAPS = "
                        f"{', '.join(map(str, axes))}; a permutation of 1, 2, 3 is needed).")
    _check_header_cell(p, [float(x) for x in floats[10:16]])
    if not (0 <= ispg <= 230 or 401 <= ispg <= 630):
        raise CrysError(f"{p} has an invalid space-group number {ispg} in its header.")
    if nsymbt < 0 or nsymbt % 80:
        raise CrysError(f"{p} has an invalid symmetry-record length {nsymbt} in its header "
                        f"(a multiple of 80 bytes is needed).")
    n_ops = _symmetry_order(ispg)
    if mx * my * mz > n_ops * nc * nr * ns:  # even the symmetry copies cannot fill the cell
        raise CrysError(f"The map {p} covers only {_percent_floor(n_ops * nc * nr * ns / (mx * my * mz))} "
                        f"of the unit cell; export the whole cell.")
    needed = 1024 + nsymbt + nc * nr * ns * _CCP4_MODE_BYTES[mode]
    if size < needed:
        raise CrysError(f"{p} is not a readable CCP4/MRC map (truncated: its header announces {needed} bytes, "
                        f"the file has {size}).")


def _symmetry_order(ispg: int) -> int:
    """Number of symmetry copies of space group ``ispg`` (centring included); 192 when it is unknown."""
    sg = gemmi.find_spacegroup_by_number(ispg % 400) if 1 <= ispg % 400 <= 230 else None
    if sg is None:
        return 1 if ispg == 0 else 192
    ops = sg.operations()
    return len(ops.sym_ops) * len(ops.cen_ops)


def _check_header_cell(p: Path, values: list[float]) -> None:
    a, b, c, al, be, ga = values
    if not all(np.isfinite(values)) or min(a, b, c) <= 0 or not all(0 < x < 180 for x in (al, be, ga)):
        shown = ", ".join(f"{v:g}" for v in values)
        raise CrysError(f"{p} has an invalid unit cell in its header ({shown}).")
    volume = gemmi.UnitCell(a, b, c, al, be, ga).volume
    if not np.isfinite(volume) or volume <= 0:
        raise CrysError(f"{p} has a unit cell in its header whose angles give no volume.")


def _percent_floor(fraction: float) -> str:
    """A coverage fraction as a percentage that never rounds up to '100 %' while something is missing."""
    return f"{np.floor(fraction * 1000) / 10:.1f} %"


def write_map(cmap: CrystalMap, path: PathLike) -> Path:
    """Write a map as a CCP4 file (whole cell, mode 2), atomically."""
    ccp4 = gemmi.Ccp4Map()
    ccp4.grid = cmap.grid
    ccp4.update_ccp4_header()
    with atomic_path(path) as tmp:
        _gemmi_write(lambda: ccp4.write_ccp4_map(str(tmp)), path)
    return Path(path)


# ---------------------------------------------------------------------------------------------- MTZ

def read_mtz(path: PathLike, columns: Mapping[str, str] | None = None, need: tuple[str, ...] = (),
             want: tuple[str, ...] = (), name: str | None = None, columns_flag: str = "--columns") -> Reflections:
    """Read an MTZ file and choose a column for each role.

    ``columns`` maps roles (F, SIGF, I, SIGI, PHI, FOM, FWT) to labels chosen by the user; a label that
    is not in the file is an error.  Roles in ``need`` that were not given are picked automatically from
    the usual labels (``COLUMN_PREFERENCES``), then by column type; roles in ``want`` likewise but
    silently skipped when absent.  ``need`` may contain alternatives written ``"F|I"`` (either is fine).
    Amplitudes and phases are picked as a consistent set (:func:`_phase_set`): map coefficients with
    their own phases (FWT with PHWT, never weighted by FOM), or observed amplitudes with experimental
    phases and FOM (FP with PHIB and FOM).  The automatic choices are recorded in ``Reflections.notes``
    as one line; ``columns_flag`` is the flag named in messages for choosing columns by hand.
    """
    p = _existing_file(path, "MTZ")
    check_mtz_header(p)
    try:
        mtz = gemmi.read_mtz_file(str(p))
    except Exception as exc:
        raise CrysError(f"{p} is not a readable MTZ file ({_short(exc)}).") from None
    if mtz.nreflections == 0:
        raise CrysError(f"The MTZ file {p} holds no reflections.")
    labels = _column_types(mtz, p)
    _check_mtz_crystal(mtz, p)
    chosen: dict[str, str] = {}
    notes: list[str] = []
    for role, label in (columns or {}).items():
        role = role.upper()
        if label not in labels:
            raise CrysError(f"The MTZ file {p.name} has no column '{label}' "
                            f"(columns: {', '.join(f'{k}({v})' for k, v in labels.items())}).")
        _check_column_type(p, role, label, labels[label])
        chosen[role] = label
    by_hand = set(chosen)
    picked = _phase_set(labels, chosen, need, want)
    chosen.update(picked)
    for item in need + want:
        alternatives = item.split("|")
        if any(a in chosen for a in alternatives):
            continue
        if item == "FOM" and chosen.get("F") in MAP_COEFFICIENTS:
            continue  # map coefficients are already weighted
        if item == "PHI" and "F" in by_hand and "PHI" in [r for i in need for r in i.split("|")]:
            raise CrysError(f"The MTZ file {p.name} has no phase column known to go with {chosen['F']}; name "
                            f"one with {columns_flag}, e.g. F={chosen['F']},PHI=... "
                            f"(columns: {', '.join(f'{k}({v})' for k, v in labels.items())}).")
        if item == "PHI" and "F" in by_hand:
            continue  # an amplitude chosen by hand is never given a phase of another set
        for role in alternatives:
            label = _auto_pick(role, labels)
            if role == "PHI" and label in OWN_PHASES and (chosen.get("F"), label) not in PHASE_PAIRS:
                label = None  # the phases of another set (PHWT of FWT) never go with this amplitude
            if label:
                chosen[role] = picked[role] = label
                break
        else:
            if item in need:
                kinds = " or ".join(f"{r} (type {COLUMN_PREFERENCES[r][1]})" for r in alternatives)
                raise CrysError(f"The MTZ file {p.name} has no {kinds} column; name one with {columns_flag} "
                                f"(columns: {', '.join(f'{k}({v})' for k, v in labels.items())}).")
    # sigma columns follow their amplitude when possible (FP -> SIGFP)
    for role, sig in (("F", "SIGF"), ("I", "SIGI")):
        if role in chosen and sig not in chosen:
            guess = "SIG" + chosen[role]
            if labels.get(guess) == "Q":
                chosen[sig] = guess
                if role in picked:
                    picked[sig] = guess
    if picked:
        kind = (" (map coefficients: not weighted by FOM)" if "PHI" in picked and "FOM" not in chosen
                and chosen.get("F") in MAP_COEFFICIENTS else "")
        notes.append(f"columns of {p.name} picked automatically: "
                     f"{', '.join(f'{r}={lab}' for r, lab in picked.items())}{kind}; choose others with "
                     f"{columns_flag}")
    _check_mtz_values(mtz, p, chosen)
    return Reflections(mtz=mtz, columns=chosen, name=name or p.stem, notes=notes)


#: MTZ column types a role accepts when the user names the column (anomalous variants included)
ROLE_TYPES: dict[str, str] = {"F": "FG", "FWT": "FG", "SIGF": "QL", "I": "JK", "SIGI": "QM", "PHI": "P",
                              "FOM": "W"}
_TYPE_NAMES = {"F": "an amplitude", "G": "an anomalous amplitude", "Q": "a standard deviation",
               "L": "an anomalous standard deviation", "J": "an intensity", "K": "an anomalous intensity",
               "M": "an anomalous standard deviation", "P": "a phase", "W": "a weight", "H": "a Miller index",
               "I": "an integer", "R": "a real number", "A": "a phase probability", "D": "an anomalous difference",
               "B": "a batch number", "Y": "an M/ISYM flag"}


def _column_types(mtz: gemmi.Mtz, p: Path) -> dict[str, str]:
    """{label: type letter}; labels or types that are not text mean a damaged header."""
    try:
        return {c.label: c.type for c in mtz.columns}
    except (UnicodeDecodeError, ValueError):
        raise CrysError(f"The MTZ file {p} has a damaged column header (a label or type is not text).") from None


def _check_column_type(p: Path, role: str, label: str, typ: str) -> None:
    accepted = ROLE_TYPES.get(role)
    if accepted and typ not in accepted:
        what = _TYPE_NAMES.get(typ, f"of type {typ}")
        need = " or ".join(f"{_TYPE_NAMES[t]} (type {t})" for t in accepted)
        raise CrysError(f"The column '{label}' of {p.name} is {what} (type {typ}), but {role} needs {need}.")


def _check_mtz_crystal(mtz: gemmi.Mtz, p: Path) -> None:
    cell = mtz.cell
    values = [cell.a, cell.b, cell.c, cell.alpha, cell.beta, cell.gamma]
    if not all(np.isfinite(values)) or min(values[:3]) <= 0 or not np.isfinite(cell.volume) or cell.volume <= 0:
        raise CrysError(f"The MTZ file {p} has an invalid unit cell "
                        f"({', '.join(f'{v:g}' for v in values)}).")
    if mtz.spacegroup is None:
        raise CrysError(f"The MTZ file {p} names no space group gemmi knows.")


def _check_mtz_values(mtz: gemmi.Mtz, p: Path, chosen: Mapping[str, str]) -> None:
    """Miller indices must be finite integers; a chosen column may miss values (NaN) but not be empty
    of numbers, and holds no infinities."""
    data = np.array(mtz, copy=False)
    if data.ndim != 2 or data.shape[0] == 0 or data.shape[1] < 3:
        raise CrysError(f"The MTZ file {p} holds no usable reflection data.")
    hkl = data[:, :3]
    if not np.isfinite(hkl).all() or (hkl != np.round(hkl)).any() or np.abs(hkl).max() > 10000:
        raise CrysError(f"The MTZ file {p} has Miller indices that are not whole numbers.")
    for role, label in chosen.items():
        values = mtz.column_with_label(label).array
        if np.isinf(values).any():
            raise CrysError(f"The column '{label}' ({role}) of {p.name} holds infinite values.")
        if not np.isfinite(values).any():
            raise CrysError(f"The column '{label}' ({role}) of {p.name} holds no numbers (all missing).")


def check_mtz_header(path: PathLike) -> None:
    """Check the MTZ file's first words before gemmi reads it: the 'MTZ ' tag and the position of the
    header records (word 2, in 4-byte words), which gemmi trusts to size its read of the reflection data (a
    position beyond the file made it allocate gigabytes)."""
    p = Path(path)
    size = p.stat().st_size
    with open(p, "rb") as fh:
        head = fh.read(12)
    if len(head) < 12 or head[:4] != b"MTZ ":
        raise CrysError(f"{p} is not a readable MTZ file (it does not start with 'MTZ ').")
    order = ">" if head[8] >> 4 == 1 else "<"  # machine stamp: 1 big-endian, 4 little-endian
    position = int(np.frombuffer(head[4:8], dtype=f"{order}i4")[0])
    if position < 21 or (position - 1) * 4 + 80 > size:
        raise CrysError(f"{p} is not a readable MTZ file (its header position {position} lies outside "
                        f"the file of {size} bytes).")


#: amplitude label -> its phase label, in order of preference, for automatic amplitude + phase choices:
#: map coefficients first (already weighted, so never multiplied by a FOM), then observed amplitudes with
#: experimental phases (weighted by FOM), then model phases.
PHASE_PAIRS: tuple[tuple[str, str], ...] = (
    ("FWT", "PHWT"), ("2FOFCWT", "PH2FOFCWT"), ("FP", "PHIB"), ("F", "PHIB"), ("FOBS", "PHIB"),
    ("F", "PHI"), ("FP", "PHI"), ("FB", "PHIB"), ("FC", "PHIC"), ("FC_ALL", "PHIC_ALL"), ("FCALC", "PHICALC"),
)
#: phase labels that belong to one amplitude only (PHWT to FWT, PHIC to FC)
OWN_PHASES = frozenset({"PHWT", "PH2FOFCWT", "PHDELWT", "PHIC", "PHIC_ALL", "PHICALC"})
#: amplitude labels that are map coefficients (already weighted): never paired with a FOM automatically
MAP_COEFFICIENTS = frozenset({"FWT", "2FOFCWT", "DELFWT", "FOFCWT", "FB", "FC", "FC_ALL", "FCALC"})


def _phase_set(labels: Mapping[str, str], chosen: Mapping[str, str], need: tuple[str, ...],
               want: tuple[str, ...]) -> dict[str, str]:
    """{role: label} for F, PHI (and FOM) when phases are needed (a map is to be made): a consistent
    amplitude/phase pair.

    A column the user named fixes its partner (FWT -> PHWT, PHIB -> FP); FOM is added only for observed
    amplitudes with experimental phases (a FOM column next to them).  Empty when PHI is not needed or no
    known pair is in the file (the role-by-role choice then applies, which never pairs FP with PHWT)."""
    roles = need + want
    if "PHI" not in [r for item in need for r in item.split("|")] or ("F" in chosen and "PHI" in chosen):
        return {}
    for f_label, phi_label in PHASE_PAIRS:
        if chosen.get("F", f_label) != f_label or chosen.get("PHI", phi_label) != phi_label:
            continue
        if labels.get(f_label) in ("F", "G") and labels.get(phi_label) == "P":
            pair = {role: lab for role, lab in (("F", f_label), ("PHI", phi_label)) if role not in chosen}
            wants_fom = any("FOM" in item.split("|") for item in roles)
            if wants_fom and "FOM" not in chosen and f_label not in MAP_COEFFICIENTS:
                fom = _auto_pick("FOM", labels)
                if fom:
                    pair["FOM"] = fom
            return pair
    return {}


def is_mtz_file(path: PathLike) -> bool:
    """True when ``path`` is a file that starts with the MTZ tag (so it is read as reflections)."""
    try:
        with open(path, "rb") as fh:
            return fh.read(4) == b"MTZ "
    except OSError:
        return False


def _auto_pick(role: str, labels: Mapping[str, str]) -> str | None:
    preferred, types = COLUMN_PREFERENCES.get(role, ((), ""))
    for label in preferred:
        if label in labels and labels[label] in types:
            return label
    if role in ("SIGF", "SIGI"):  # never guess a sigma by type alone
        return None
    candidates = [lab for lab, typ in labels.items() if typ in types]
    return candidates[0] if len(candidates) == 1 else None


def write_mtz(mtz: gemmi.Mtz, path: PathLike) -> Path:
    """Write an MTZ file atomically."""
    mtz.update_reso()
    with atomic_path(path) as tmp:
        _gemmi_write(lambda: mtz.write_to_file(str(tmp)), path)
    return Path(path)


def _gemmi_write(write, path: PathLike) -> None:
    """Run a gemmi writer; its I/O failure (disk full, file-size limit) becomes one sentence."""
    try:
        write()
    except (RuntimeError, OSError) as exc:
        raise CrysError(f"Could not write {path} ({_short(exc)}); the disk may be full or the file too large.") from None


def make_mtz(cell: gemmi.UnitCell, spacegroup: gemmi.SpaceGroup, hkl: np.ndarray,
             columns: Mapping[str, tuple[str, np.ndarray]], title: str = "crysplugins") -> gemmi.Mtz:
    """Build an MTZ from Miller indices and named columns: ``{label: (type letter, values)}``.

    Type letters follow MTZ conventions: F amplitude, Q sigma, J intensity, P phase (degrees), W weight.
    """
    mtz = gemmi.Mtz(with_base=True)
    mtz.title = title
    mtz.cell = cell
    mtz.spacegroup = spacegroup
    mtz.add_dataset("crysplugins")
    for label, (typ, _) in columns.items():
        mtz.add_column(label, typ)
    data = [np.asarray(hkl, dtype=np.float32).reshape(-1, 3)]
    data += [np.asarray(v, dtype=np.float32).reshape(-1, 1) for _, v in columns.values()]
    mtz.set_data(np.hstack(data))
    mtz.update_reso()
    return mtz


# ------------------------------------------------------------------------------- structures, sequence

def read_structure(path: PathLike) -> gemmi.Structure:
    """Read a PDB or mmCIF (optionally gzipped) file; the first model is what predictors use."""
    p = _existing_file(path, "coordinate")
    try:
        st = gemmi.read_structure(str(p))
    except Exception as exc:
        raise CrysError(f"{p} is not a readable PDB/mmCIF file ({_short(exc)}).") from None
    if len(st) == 0 or st[0].count_atom_sites() == 0:
        raise CrysError(f"The coordinate file {p} holds no atoms.")
    st.setup_entities()
    return st


#: file name endings taken as a sequence file even when the file does not exist (to say so)
SEQUENCE_SUFFIXES = (".fasta", ".fa", ".faa", ".seq", ".pir", ".txt", ".fas")


def read_sequence(text_or_path: str) -> Sequence:
    """A sequence from a one-letter string, or from a FASTA/plain-text file (all records joined).

    The text is a file when it names an existing file, holds a folder separator or ends in a sequence
    file suffix; otherwise it is the sequence itself (so ``MKV.`` is a sequence with a stray '.').
    """
    looks_like_path = (any(ch in text_or_path for ch in "/\\") or exists_quietly(text_or_path)
                       or text_or_path.lower().endswith(SEQUENCE_SUFFIXES))
    if looks_like_path:
        p = _existing_file(Path(text_or_path), "sequence")
        lines = p.read_text(errors="replace").splitlines()
        residues = "".join(line.strip() for line in lines if line.strip() and not line.startswith(">"))
        return Sequence(residues.replace("*", ""), name=p.stem)
    return Sequence(text_or_path)


def parse_cell(text: str) -> gemmi.UnitCell:
    """A unit cell from 'a b c alpha beta gamma' (Å, degrees; commas allowed)."""
    parts = text.replace(",", " ").split()
    try:
        values = [float(x) for x in parts]
    except ValueError:
        raise CrysError(f"'{text}' is not a unit cell; give six numbers: a b c alpha beta gamma.") from None
    if len(values) != 6:
        raise CrysError(f"'{text}' is not a unit cell; give six numbers: a b c alpha beta gamma.")
    a, b, c, al, be, ga = values
    if min(a, b, c) <= 0 or not all(0 < x < 180 for x in (al, be, ga)):
        raise CrysError(f"'{text}' is not a valid unit cell (lengths > 0 Å, angles between 0 and 180°).")
    cell = gemmi.UnitCell(a, b, c, al, be, ga)
    if not np.isfinite(cell.volume) or cell.volume <= 0:
        raise CrysError(f"'{text}' is not a valid unit cell (its angles give no volume).")
    return cell


def parse_spacegroup(text: str) -> gemmi.SpaceGroup:
    """A space group from a Hermann-Mauguin symbol ('P 21 21 21') or an ITA number ('19')."""
    sg = gemmi.find_spacegroup_by_name(text.strip())
    if sg is None and text.strip().isdigit():
        sg = gemmi.find_spacegroup_by_number(int(text.strip()))
    if sg is None:
        raise CrysError(f"'{text}' is not a space group gemmi knows.")
    return sg


# ---------------------------------------------------------------------------------------- atomicity

@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    A folder that cannot be made or written to, a full disk or a file-size limit ends in a CrysError
    naming ``path``, and the temporary file is removed.
    """
    dest = Path(path)
    try:
        if dest.parent and not dest.parent.is_dir():
            dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=str(dest.parent or "."))
        os.close(fd)
    except OSError as exc:
        raise CrysError(f"Could not write {dest} ({os_reason(exc)}).") from None
    tmp = Path(tmp_name)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file normal permissions
        os.replace(tmp, dest)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise CrysError(f"Could not write {dest} ({os_reason(exc)}).") from None
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]
