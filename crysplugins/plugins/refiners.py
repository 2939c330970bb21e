"""Built-in refiners (``register_refiners`` hook): in-process density modification, and SHELXE when installed.

* ``density-modification`` — :class:`crysplugins.crystal.refine.DensityModificationRefiner` (numpy + gemmi).
* ``shelxe`` — an adapter that runs G. M. Sheldrick's SHELXE on a starting map, registered only when a
  ``shelxe`` executable is on PATH (or named by ``CRYSPLUGINS_SHELXE``).  It writes the files SHELXE
  expects for density modification from starting phases, as in the paper's appendix E workflow:

  - ``<name>.hkl``  native data, HKLF 4 format (3I4, 2F8.2: h k l I σ(I), I = F² scaled to fit the
    field, σ(I) = 2F·σ(F) or 2F·0.01F when no σ is given), ended by a 0 0 0 record;
  - ``<name>.ins``  TITL, CELL (λ = 1.0 Å), ZERR, LATT −1 (P1), SFAC C H N O S, UNIT (from the sequence,
    or carbon-equivalent from the cell and solvent fraction), END;
  - ``<name>.phi``  starting phases, one line per reflection in the XtalView ``.phs`` layout SHELXE reads
    (3I4, F9.2, F8.4, F8.1: h k l F FOM φ in degrees), from the starting map's Fourier coefficients;

  then runs ``shelxe <name>.phi -s<solvent> -m<cycles> -a<trace cycles>`` in a temporary folder and reads
  back ``<name>.phs`` (same layout; the density-modified phases) and the best "CC for partial structure
  against native data" from the log.  Success score: that CC (as a fraction) when SHELXE traced
  (``refined`` when ≥ 0.20, appendix E), otherwise the in-process amplitude CC of the returned phases.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import gemmi
import numpy as np

from crysplugins.crystal.fourier import FourierGrid, fourier_grid
from crysplugins.crystal.matthews import PROTEIN_VOLUME_PER_DALTON
from crysplugins.crystal.refine import (REFINED_CC, DensityModificationRefiner, RefineResult, observed_data,
                                        solvent_fraction_from_sequence)
from crysplugins.errors import CrysError
from crysplugins.hookspecs import hookimpl
from crysplugins.interface import CrystalMap, ObservedAmplitudes, Reflections, Refiner, Request, Sequence

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


# ------------------------------------------------------------------------------------- the adapter

class ShelxeRefiner:
    """Runs SHELXE density modification (and optional autotracing) on a starting map."""

    name = "shelxe"
    summary = "SHELXE density modification from starting phases (external program; found on PATH)."

    def __init__(self, executable: str | None = None) -> None:
        self.executable = executable or shelxe_executable()

    def refine(self, cmap: CrystalMap | None, reflections: Reflections, solvent_fraction: float | None = None,
               sequence: Sequence | str | None = None, cycles: int = 20, trace_cycles: int = 0,
               phases: np.ndarray | None = None, extra_args: tuple[str, ...] = (), timeout: float = 3600,
               keep_dir: str | Path | None = None, **_: Any) -> RefineResult:
        """Write .hkl/.ins/.phi, run SHELXE, read .phs.  ``cycles`` = SHELXE ``-m``; ``trace_cycles`` = ``-a``."""
        if not self.executable:
            raise CrysError("SHELXE is not installed (no 'shelxe' on PATH and CRYSPLUGINS_SHELXE is not set).")
        msgs: list[str] = []
        cell, hkl, fobs = observed_data(reflections, msgs)
        seq = Sequence(sequence) if isinstance(sequence, str) else sequence
        if solvent_fraction is None:
            if seq is None:
                raise CrysError("SHELXE needs a solvent fraction or a sequence.")
            solvent_fraction = solvent_fraction_from_sequence(seq, cell)
        fg = fourier_grid(cell, hkl, d_min=float(np.min(_d(cell, hkl))))
        if phases is None:
            if cmap is None:
                raise CrysError("The SHELXE refiner needs a starting map or starting phases.")
            src = FourierGrid(hkl, cmap.shape, float(cell.volume)) if cmap.shape != fg.shape else fg
            try:
                f0, _ = src.from_map(np.asarray(cmap.array, dtype=np.float64))
            except ValueError:
                raise CrysError("The starting map's grid is too coarse for the reflections' resolution.") from None
            phases = np.degrees(np.angle(f0))
        work = Path(keep_dir) if keep_dir else Path(tempfile.mkdtemp(prefix="crysplugins-shelxe-"))
        work.mkdir(parents=True, exist_ok=True)
        stem = "xx"
        try:
            write_hkl(work / f"{stem}.hkl", hkl, fobs)  # σ(I) from 1 % of F
            write_ins(work / f"{stem}.ins", cell, seq, float(solvent_fraction))
            write_phi(work / f"{stem}.phi", hkl, fobs, phases)
            cmd = [self.executable, f"{stem}.phi", f"-s{solvent_fraction:.3f}", f"-m{int(cycles)}",
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
        # put SHELXE's phases back onto our reflection list (it may drop or reorder reflections)
        key = {tuple(x): i for i, x in enumerate(h2.tolist())}
        idx = np.array([key.get(tuple(x), -1) for x in hkl.tolist()])
        found = idx >= 0
        out_phi = np.where(found, ph2[np.maximum(idx, 0)], np.nan)
        out_fom = np.where(found, fom2[np.maximum(idx, 0)], 0.0)
        use_f = np.where(found, fobs, 0.0)
        rho = fg.to_map(use_f * np.exp(1j * np.deg2rad(np.nan_to_num(out_phi))))
        trace_cc = best_trace_cc(log)
        if trace_cc is not None:
            score, refined = trace_cc, trace_cc >= SHELXE_REFINED_CC
        else:
            from crysplugins.crystal.refine import density_modify

            observed = ObservedAmplitudes(cell, gemmi.SpaceGroup("P 1"), hkl, fobs)
            check = density_modify(None, observed, phases=np.nan_to_num(out_phi),
                                   solvent_fraction=solvent_fraction, cycles=1)
            score, refined = check.score, check.score >= REFINED_CC
        out_map = CrystalMap.from_array(rho.astype(np.float32), cell, gemmi.SpaceGroup("P 1"), name="refined",
                                        units="e/A^3")
        return RefineResult(map=out_map, hkl=hkl.astype(np.int32), phases=np.nan_to_num(out_phi),
                            amplitudes=fobs, fom=out_fom, score=float(score), refined=bool(refined),
                            history=[{"cycle": int(cycles), "cc": float(score)}],
                            info={"program": "shelxe", "command": " ".join(cmd), "solvent_fraction": solvent_fraction,
                                  "trace_cc": trace_cc, "reflections_returned": int(found.sum()),
                                  "messages": msgs})


def _d(cell: gemmi.UnitCell, hkl: np.ndarray) -> np.ndarray:
    from crysplugins.crystal.fourier import cell_d

    return cell_d(cell, hkl)


@hookimpl
def register_refiners(register):  # type: ignore[no-untyped-def]
    register(DensityModificationRefiner())
    if shelxe_executable():
        register(ShelxeRefiner())


def refiner_for(request: Request, name: str) -> Refiner:
    """The refiner ``name`` from the host's registry that came with the request; a Python caller that
    built its own :class:`Request` without refiners gets the built-in ones."""
    registry = request.refiners
    if not registry:
        found: list[Refiner] = []
        register_refiners(found.append)
        registry = {r.name: r for r in found}
    refiner = registry.get(name)
    if refiner is None:
        raise CrysError(f"There is no refiner called '{name}' (installed: {', '.join(sorted(registry)) or 'none'}).")
    return refiner
