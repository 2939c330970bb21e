"""SHELXE (G. M. Sheldrick) as a density-modification program: the files it reads and writes, and one run.

Density modification from starting phases, as in the RecCrysFormer paper's appendix E workflow:

- ``<name>.hkl``  native data, HKLF 4 format (3I4, 2F8.2: h k l I σ(I), I = F² scaled to fit the
  field, σ(I) = 2F·σ(F) or 2F·0.01F when no σ is given), ended by a 0 0 0 record;
- ``<name>.ins``  TITL, CELL (λ = 1.0 Å), ZERR, LATT −1 (P1), SFAC C H N O S, UNIT (from the sequence,
  or carbon-equivalent from the cell and solvent fraction), END;
- ``<name>.phi``  starting phases, one line per reflection in the XtalView ``.phs`` layout SHELXE reads
  (3I4, F9.2, F8.4, F8.1: h k l F FOM φ in degrees);

then ``shelxe <name>.phi -s<solvent> -m<cycles> -a<trace cycles>`` runs in a temporary folder, and
``<name>.phs`` (same layout; the density-modified phases) and the best "CC for partial structure against
native data" of the log are read back.  The refiner built on it is in :mod:`crysplugins.plugins.refiners`.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import gemmi
import numpy as np

from crysplugins.crystal.matthews import PROTEIN_VOLUME_PER_DALTON
from crysplugins.errors import CrysError
from crysplugins.interface import Sequence

#: SHELXE's traced-model CC (fraction) above which a map is taken as solved (paper appendix E).
SHELXE_REFINED_CC = 0.20
ENV_SHELXE = "CRYSPLUGINS_SHELXE"

_ATOMS = {  # heavy-atom composition of each residue (C, N, O, S) and hydrogens, for the UNIT card
    "A": (3, 1, 1, 0, 5), "R": (6, 4, 1, 0, 12), "N": (4, 2, 2, 0, 6), "D": (4, 1, 3, 0, 5),
    "C": (3, 1, 1, 1, 5), "Q": (5, 2, 2, 0, 8), "E": (5, 1, 3, 0, 7), "G": (2, 1, 1, 0, 3),
    "H": (6, 3, 1, 0, 7), "I": (6, 1, 1, 0, 11), "L": (6, 1, 1, 0, 11), "K": (6, 2, 1, 0, 12),
    "M": (5, 1, 1, 1, 9), "F": (9, 1, 1, 0, 9), "P": (5, 1, 1, 0, 7), "S": (3, 1, 2, 0, 5),
    "T": (4, 1, 2, 0, 7), "W": (11, 2, 1, 0, 10), "Y": (9, 1, 2, 0, 9), "V": (5, 1, 1, 0, 9),
}


def shelxe_executable() -> str | None:
    """Path of the SHELXE executable: ``$CRYSPLUGINS_SHELXE`` or ``shelxe`` on PATH (None when absent)."""
    env = os.environ.get(ENV_SHELXE, "").strip()
    if env:
        return env if Path(env).exists() else shutil.which(env)
    return shutil.which("shelxe")


# ------------------------------------------------------------------------------------- file writers

def write_hkl(path: Path, hkl: np.ndarray, f: np.ndarray, sigf: np.ndarray | None = None) -> float:
    """Write HKLF 4 intensities (3I4, 2F8.2) from amplitudes; returns the scale applied to I."""
    f = np.asarray(f, dtype=np.float64)
    i = f * f
    sig = 2.0 * f * (np.asarray(sigf, dtype=np.float64) if sigf is not None else 0.01 * f + 1e-3)
    scale = 9999.0 / max(i.max(), 1e-12)  # largest I fits F8.2 with room
    lines = [f"{h:4d}{k:4d}{l:4d}{ii * scale:8.2f}{max(ss * scale, 0.01):8.2f}"
             for (h, k, l), ii, ss in zip(np.asarray(hkl, dtype=int), i, sig)]
    lines.append(f"{0:4d}{0:4d}{0:4d}{0.0:8.2f}{0.0:8.2f}")
    path.write_text("\n".join(lines) + "\n")
    return scale


def write_ins(path: Path, cell: gemmi.UnitCell, sequence: Sequence | None, solvent_fraction: float,
              title: str = "crysplugins") -> None:
    """Write a minimal SHELX .ins (P1) with CELL, LATT −1, SFAC and UNIT."""
    if sequence is not None:
        c = n = o = s = hh = 0
        for ch in sequence.residues:
            a = _ATOMS[ch]
            c, n, o, s, hh = c + a[0], n + a[1], o + a[2], s + a[3], hh + a[4]
        o += 1  # terminal oxygen
    else:  # carbon-equivalent content: protein volume ≈ 1.23 Å³/Da, ~ 7.7 heavy atoms per 100 Da
        mw = (1.0 - solvent_fraction) * cell.volume / PROTEIN_VOLUME_PER_DALTON
        heavy = max(int(round(mw / 100 * 7.7)), 1)
        c, n, o, s, hh = int(heavy * 0.64), int(heavy * 0.17), int(heavy * 0.18), 0, int(heavy * 1.0)
    units = [max(x, 1) for x in (c, hh, n, o, s)]
    text = "\n".join([
        f"TITL {title}",
        f"CELL 1.0000 {cell.a:.4f} {cell.b:.4f} {cell.c:.4f} {cell.alpha:.3f} {cell.beta:.3f} {cell.gamma:.3f}",
        "ZERR 1 0.001 0.001 0.001 0.01 0.01 0.01",
        "LATT -1",
        "SFAC C H N O S",
        "UNIT " + " ".join(str(u) for u in units),
        "END",
    ])
    path.write_text(text + "\n")


def write_phi(path: Path, hkl: np.ndarray, f: np.ndarray, phases_deg: np.ndarray, fom: np.ndarray | None = None) -> None:
    """Write starting phases in the .phs layout (3I4, F9.2, F8.4, F8.1): h k l F FOM φ (degrees)."""
    f = np.asarray(f, dtype=np.float64)
    scale = 9999.0 / max(f.max(), 1e-12)
    w = np.full(len(f), 1.0) if fom is None else np.clip(np.asarray(fom, dtype=np.float64), 0.0, 1.0)
    ph = np.mod(np.asarray(phases_deg, dtype=np.float64), 360.0)
    lines = [f"{h:4d}{k:4d}{l:4d}{ff * scale:9.2f}{ww:8.4f}{pp:8.1f}"
             for (h, k, l), ff, ww, pp in zip(np.asarray(hkl, dtype=int), f, w, ph)]
    path.write_text("\n".join(lines) + "\n")


def read_phs(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Read a .phs file: (hkl, F, FOM, φ degrees).  Fixed columns first, whitespace-separated as fallback."""
    rows = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            row = (int(line[0:4]), int(line[4:8]), int(line[8:12]), float(line[12:21]), float(line[21:29]),
                   float(line[29:37]))
        except ValueError:
            parts = line.split()
            if len(parts) < 6:
                raise CrysError(f"SHELXE wrote an unreadable phase file {path.name}.") from None
            row = (int(parts[0]), int(parts[1]), int(parts[2]), float(parts[3]), float(parts[4]), float(parts[5]))
        rows.append(row)
    if not rows:
        raise CrysError(f"SHELXE wrote an empty phase file {path.name}.")
    a = np.array(rows, dtype=np.float64)
    return a[:, :3].astype(np.int64), a[:, 3], a[:, 4], a[:, 5]


_CC_RE = re.compile(r"CC for partial structure against native data\s*=\s*([0-9.]+)\s*%")


def best_trace_cc(log: str) -> float | None:
    """Highest 'CC for partial structure against native data' in a SHELXE log, as a fraction."""
    values = [float(m) for m in _CC_RE.findall(log)]
    return max(values) / 100.0 if values else None


@dataclass
class ShelxeRun:
    """What one SHELXE run gave back: its phases (degrees) and figures of merit on the observed reflections
    (NaN and 0 where SHELXE dropped one), how many it returned, the log and the command line."""

    phases: np.ndarray
    fom: np.ndarray
    returned: np.ndarray
    log: str
    command: str

    @property
    def trace_cc(self) -> float | None:
        return best_trace_cc(self.log)


def run_shelxe(executable: str, cell: gemmi.UnitCell, hkl: np.ndarray, fobs: np.ndarray, phases: np.ndarray,
               solvent_fraction: float, sequence: Sequence | None, cycles: int = 20, trace_cycles: int = 0,
               extra_args: tuple[str, ...] = (), timeout: float = 3600,
               keep_dir: str | Path | None = None) -> ShelxeRun:
    """Write .hkl/.ins/.phi, run SHELXE (``-m`` cycles, ``-a`` trace cycles), read .phs; see the module doc."""
    work = Path(keep_dir) if keep_dir else Path(tempfile.mkdtemp(prefix="crysplugins-shelxe-"))
    work.mkdir(parents=True, exist_ok=True)
    stem = "xx"
    try:
        write_hkl(work / f"{stem}.hkl", hkl, fobs)  # σ(I) from 1 % of F
        write_ins(work / f"{stem}.ins", cell, sequence, float(solvent_fraction))
        write_phi(work / f"{stem}.phi", hkl, fobs, phases)
        cmd = [executable, f"{stem}.phi", f"-s{solvent_fraction:.3f}", f"-m{int(cycles)}",
               f"-a{int(trace_cycles)}", *extra_args]
        try:
            proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=timeout)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise CrysError(f"SHELXE could not be run ({type(exc).__name__}: {exc}).") from None
        log = proc.stdout + proc.stderr
        (work / "shelxe.log").write_text(log)
        phs = work / f"{stem}.phs"
        if proc.returncode != 0 or not phs.exists():
            tail = log.strip().splitlines()[-1] if log.strip() else f"exit code {proc.returncode}"
            raise CrysError(f"SHELXE failed: {tail[:200]}")
        h2, _, fom2, ph2 = read_phs(phs)
    finally:
        if not keep_dir:
            shutil.rmtree(work, ignore_errors=True)
    # SHELXE may drop or reorder reflections: put its phases back onto the observed list
    key = {tuple(x): i for i, x in enumerate(h2.tolist())}
    idx = np.array([key.get(tuple(x), -1) for x in np.asarray(hkl).tolist()])
    found = idx >= 0
    return ShelxeRun(np.where(found, ph2[np.maximum(idx, 0)], np.nan), np.where(found, fom2[np.maximum(idx, 0)], 0.0),
                     found, log, " ".join(cmd))
