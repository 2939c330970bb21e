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

PathLike = str | os.PathLike


def _existing_file(path: PathLike, what: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise CrysError(f"The {what} file {p} does not exist.")
    if p.is_dir():
        raise CrysError(f"{p} is a folder, not a {what} file.")
    if p.stat().st_size == 0:
        raise CrysError(f"The {what} file {p} is empty.")
    return p


# --------------------------------------------------------------------------------------------- maps

def read_map(path: PathLike, name: str | None = None) -> CrystalMap:
    """Read a CCP4/MRC map and expand it to the whole unit cell (symmetry applied by gemmi).

    Maps that cover only part of the cell (a box around a model) are refused: predictors work on the
    periodic unit cell.
    """
    p = _existing_file(path, "map")
    try:
        ccp4 = gemmi.read_ccp4_map(str(p))
    except Exception as exc:
        raise CrysError(f"{p} is not a readable CCP4/MRC map ({_short(exc)}).") from None
    try:
        ccp4.setup(float("nan"))
    except Exception as exc:
        raise CrysError(f"{p} is not a usable CCP4/MRC map ({_short(exc)}).") from None
    arr = np.array(ccp4.grid, copy=False)
    if arr.size == 0 or min(arr.shape) < 2:
        raise CrysError(f"The map {p} has an empty or degenerate grid {arr.shape}.")
    if np.isnan(arr).any():
        covered = 1.0 - float(np.isnan(arr).mean())
        raise CrysError(f"The map {p} covers only {covered:.0%} of the unit cell; export the whole cell.")
    cell = ccp4.grid.unit_cell
    if cell.volume <= 0 or not np.isfinite(cell.volume):
        raise CrysError(f"The map {p} has an invalid unit cell.")
    return CrystalMap(grid=ccp4.grid, name=name or p.stem)


def write_map(cmap: CrystalMap, path: PathLike) -> Path:
    """Write a map as a CCP4 file (whole cell, mode 2), atomically."""
    ccp4 = gemmi.Ccp4Map()
    ccp4.grid = cmap.grid
    ccp4.update_ccp4_header()
    with atomic_path(path) as tmp:
        ccp4.write_ccp4_map(str(tmp))
    return Path(path)


# ---------------------------------------------------------------------------------------------- MTZ

def read_mtz(path: PathLike, columns: Mapping[str, str] | None = None, need: tuple[str, ...] = (),
             want: tuple[str, ...] = (), name: str | None = None) -> Reflections:
    """Read an MTZ file and choose a column for each role.

    ``columns`` maps roles (F, SIGF, I, SIGI, PHI, FOM, FWT) to labels chosen by the user; a label that
    is not in the file is an error.  Roles in ``need`` that were not given are picked automatically from
    the usual labels (``COLUMN_PREFERENCES``), then by column type; roles in ``want`` likewise but
    silently skipped when absent.  ``need`` may contain alternatives written ``"F|I"`` (either is fine).
    Every automatic choice is recorded in ``Reflections.notes``.
    """
    p = _existing_file(path, "MTZ")
    try:
        mtz = gemmi.read_mtz_file(str(p))
    except Exception as exc:
        raise CrysError(f"{p} is not a readable MTZ file ({_short(exc)}).") from None
    if mtz.nreflections == 0:
        raise CrysError(f"The MTZ file {p} holds no reflections.")
    labels = {c.label: c.type for c in mtz.columns}
    chosen: dict[str, str] = {}
    notes: list[str] = []
    for role, label in (columns or {}).items():
        role = role.upper()
        if label not in labels:
            raise CrysError(f"The MTZ file {p.name} has no column '{label}' "
                            f"(columns: {', '.join(f'{k}({v})' for k, v in labels.items())}).")
        chosen[role] = label
    for item in need + want:
        alternatives = item.split("|")
        if any(a in chosen for a in alternatives):
            continue
        for role in alternatives:
            label = _auto_pick(role, labels)
            if label:
                chosen[role] = label
                notes.append(f"picked column {label} as {role}")
                break
        else:
            if item in need:
                kinds = " or ".join(f"{r} (type {COLUMN_PREFERENCES[r][1]})" for r in alternatives)
                raise CrysError(f"The MTZ file {p.name} has no {kinds} column; name one with --columns "
                                f"(columns: {', '.join(f'{k}({v})' for k, v in labels.items())}).")
    # sigma columns follow their amplitude when possible (FP -> SIGFP)
    for role, sig in (("F", "SIGF"), ("I", "SIGI")):
        if role in chosen and sig not in chosen:
            guess = "SIG" + chosen[role]
            if labels.get(guess) == "Q":
                chosen[sig] = guess
    return Reflections(mtz=mtz, columns=chosen, name=name or p.stem, notes=notes)


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
        mtz.write_to_file(str(tmp))
    return Path(path)


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


def read_sequence(text_or_path: str) -> Sequence:
    """A sequence from a one-letter string, or from a FASTA/plain-text file (all records joined)."""
    candidate = Path(text_or_path)
    looks_like_path = any(ch in text_or_path for ch in "/\\.") or candidate.exists()
    if looks_like_path:
        p = _existing_file(candidate, "sequence")
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
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds."""
    dest = Path(path)
    if dest.parent and not dest.parent.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=str(dest.parent or "."))
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file normal permissions
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]
