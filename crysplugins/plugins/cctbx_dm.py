"""Refiner ``cctbx-dm``: cctbx's ``mmtbx.density_modification`` run as a subprocess (``register_refiners``).

It is the peer our own engine (:mod:`crysplugins.crystal.dm`) is measured against, and a choice for users
who trust cctbx.  Install it with the optional extra ``pip install crysplugins[cctbx]`` (the
``cctbx-base`` wheel, which provides the console script).  The adapter writes the amplitudes (FP, SIGFP)
and the experimental phases as Hendrickson–Lattman coefficients (HLA–HLD) in the input's space group
to an MTZ file with a parameter file beside it in a temporary folder, runs the program with a time
limit, and reads back PHIB/FOM, the HL coefficients and FWT/PHWT.  cctbx is never imported into this
process (it must be imported before gemmi/scipy in any process that loads both).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gemmi
import numpy as np

from crysplugins.crystal.dm.hl import hl_from_phase_fom
from crysplugins.crystal.dm.reflections import ReflectionSet
from crysplugins.crystal.io import make_mtz
from crysplugins.crystal.refine import RefineResult, solvent_fraction_from_sequence
from crysplugins.errors import CrysError
from crysplugins.hookspecs import hookimpl
from crysplugins.interface import Reflections

EXECUTABLE = "mmtbx.density_modification"
ENV_EXECUTABLE = "CRYSPLUGINS_CCTBX_DM"
NOT_INSTALLED = ("cctbx's mmtbx.density_modification is not installed; install it with "
                 "`pip install crysplugins[cctbx]` (the cctbx-base package).")


def cctbx_dm_executable() -> str | None:
    """Path of ``mmtbx.density_modification`` ($CRYSPLUGINS_CCTBX_DM, next to this Python, or on PATH)."""
    env = os.environ.get(ENV_EXECUTABLE, "").strip()
    if env:
        return env if Path(env).exists() else shutil.which(env)
    beside = Path(sys.executable).parent / EXECUTABLE
    return str(beside) if beside.exists() else shutil.which(EXECUTABLE)


@dataclass
class CctbxDMOutput:
    """What cctbx wrote: ``hkl`` (its ASU), ``phib`` (degrees), ``fom``, ``hl`` (n, 4), ``fwt`` complex
    map coefficients, ``seconds`` wall time and the log."""

    hkl: np.ndarray
    phib: np.ndarray
    fom: np.ndarray
    hl: np.ndarray
    fwt: np.ndarray
    seconds: float
    log: str


def parameter_text(mtz_name: str, cell: gemmi.UnitCell, spacegroup: gemmi.SpaceGroup, solvent_fraction: float,
                   out_name: str = "dm_out.mtz", extra: str = "") -> str:
    """The PHIL parameter file for one run (labels FP,SIGFP and HLA,HLB,HLC,HLD)."""
    c = cell
    return (
        "density_modification {\n"
        "  input {\n"
        f"    reflection_data {{ file_name = {mtz_name}\n      labels = FP,SIGFP }}\n"
        f"    experimental_phases {{ file_name = {mtz_name}\n      labels = HLA,HLB,HLC,HLD }}\n"
        f"    unit_cell = {c.a:.4f} {c.b:.4f} {c.c:.4f} {c.alpha:.3f} {c.beta:.3f} {c.gamma:.3f}\n"
        f"    space_group = {spacegroup.xhm().replace(' ', '')}\n"
        "  }\n"
        f"  output {{ mtz {{ file_name = {out_name} }} }}\n"
        f"  solvent_fraction = {solvent_fraction:.4f}\n"
        f"{extra}"
        "}\n")


def run_cctbx_dm(cell: gemmi.UnitCell, spacegroup: gemmi.SpaceGroup, hkl: np.ndarray, fobs: np.ndarray,
                 sigf: np.ndarray, hl: np.ndarray, solvent_fraction: float, timeout: float = 1800,
                 executable: str | None = None, extra: str = "") -> CctbxDMOutput:
    """Run cctbx DM on ASU reflections with HL coefficients (n, 4); see the module docstring."""
    exe = executable or cctbx_dm_executable()
    if not exe:
        raise CrysError(NOT_INSTALLED)
    hl = np.asarray(hl, dtype=np.float64)
    sig = np.where(np.asarray(sigf) > 0, sigf, np.maximum(0.05 * np.asarray(fobs), 1e-3))
    mtz = make_mtz(cell, spacegroup, hkl, {"FP": ("F", fobs), "SIGFP": ("Q", sig), "HLA": ("A", hl[:, 0]),
                                           "HLB": ("A", hl[:, 1]), "HLC": ("A", hl[:, 2]), "HLD": ("A", hl[:, 3])})
    with tempfile.TemporaryDirectory(prefix="crysplugins-cctbx-dm-") as tmp:
        d = Path(tmp)
        mtz.write_to_file(str(d / "input.mtz"))
        (d / "dm.params").write_text(parameter_text("input.mtz", cell, spacegroup, solvent_fraction, extra=extra))
        t0 = time.monotonic()
        try:
            proc = subprocess.run([exe, "dm.params"], cwd=d, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise CrysError(f"cctbx density modification did not finish within {timeout:.0f} s.") from None
        seconds = time.monotonic() - t0
        out = d / "dm_out.mtz"
        if proc.returncode != 0 or not out.exists():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            raise CrysError(f"cctbx density modification failed: {tail[0]}")
        return _read_output(gemmi.read_mtz_file(str(out)), seconds, proc.stdout)


def _read_output(mtz: gemmi.Mtz, seconds: float, log: str) -> CctbxDMOutput:
    data = np.array(mtz, copy=False)
    labels = [c.label for c in mtz.columns]

    def col(name: str) -> np.ndarray:
        return data[:, labels.index(name)].astype(np.float64)

    hkl = data[:, :3].astype(np.int32)
    ok = np.isfinite(col("PHIB")) & np.isfinite(col("FOM"))
    fwt = col("FWT") * np.exp(1j * np.radians(col("PHWT")))
    hl = np.stack([col(x) if x in labels else np.zeros(len(hkl)) for x in ("HLA", "HLB", "HLC", "HLD")], axis=1)
    return CctbxDMOutput(hkl=hkl[ok], phib=col("PHIB")[ok], fom=col("FOM")[ok], hl=hl[ok],
                         fwt=np.nan_to_num(fwt[ok]), seconds=seconds, log=log)


# ------------------------------------------------------------------------------------- the refiner

def _starting_data(cmap: Any, reflections: Any, phases: np.ndarray | None, fom: np.ndarray | None,
                   messages: list[str]) -> tuple[Any, np.ndarray]:
    """(ReflectionSet in the input's space group, HL coefficients) from Reflections (or a P1 tuple
    (cell, hkl, |F|)) and starting phases: ``phases`` (degrees), the PHI/FOM columns, or the map."""

    if isinstance(reflections, Reflections):
        cell, sg = reflections.cell, reflections.spacegroup or gemmi.SpaceGroup("P 1")
        hkl = reflections.miller_array().astype(np.int32)
        f = reflections.amplitudes()
        sig = reflections.values("SIGF") if reflections.has("SIGF") else np.full(len(f), np.nan)
    else:
        cell, hkl, f = reflections
        sg = gemmi.SpaceGroup("P 1")
        hkl, f = np.asarray(hkl, dtype=np.int32).reshape(-1, 3), np.asarray(f, dtype=np.float64)
        sig = np.full(len(f), np.nan)
    ok = np.isfinite(f) & (f > 0) & np.any(hkl != 0, axis=1)
    refl = ReflectionSet(cell, sg, hkl[ok], f[ok], np.nan_to_num(sig[ok], nan=0.0))
    if phases is not None:
        phi = np.radians(np.asarray(phases, dtype=np.float64))[ok]
    elif isinstance(reflections, Reflections) and reflections.has("PHI") and cmap is None:
        phi = np.radians(reflections.values("PHI"))[ok]
    elif cmap is not None:
        phi = np.angle(refl.from_map(np.asarray(cmap.array, dtype=np.float64)))
    else:
        raise CrysError("cctbx-dm needs starting phases: a map, a phase column or a phase array.")
    if fom is not None:
        m = np.asarray(fom, dtype=np.float64)[ok]
    elif isinstance(reflections, Reflections) and reflections.has("FOM"):
        m = reflections.values("FOM")[ok]
    else:
        m = np.full(len(phi), 0.5)
        messages.append("No figures of merit were given; cctbx-dm started from 0.5 for every reflection.")
    return refl, hl_from_phase_fom(phi, np.nan_to_num(m), refl.centric)


class CctbxDMRefiner:
    """The refiner ``cctbx-dm`` (see the module docstring)."""

    name = "cctbx-dm"
    summary = ("cctbx's mmtbx.density_modification (solvent flipping, truncation, sigma-A phase combination) "
               "in a subprocess; needs the optional cctbx-base package.")

    def refine(self, cmap: Any, reflections: Any, solvent_fraction: float | None = None, sequence: Any = None,
               phases: np.ndarray | None = None, fom: np.ndarray | None = None, timeout: float = 1800,
               **_: Any) -> Any:

        if not cctbx_dm_executable():
            raise CrysError(NOT_INSTALLED)
        messages: list[str] = []
        refl, hl = _starting_data(cmap, reflections, phases, fom, messages)
        if solvent_fraction is None and sequence is not None:
            solvent_fraction = solvent_fraction_from_sequence(sequence, refl.cell,
                                                              n_copies=len(refl.spacegroup.operations()))
        if solvent_fraction is None:
            raise CrysError("cctbx-dm needs a solvent fraction or a sequence.")
        out = run_cctbx_dm(refl.cell, refl.spacegroup, refl.hkl, refl.fobs, refl.sigf, hl, float(solvent_fraction),
                           timeout=timeout)
        fobs = np.abs(refl.values_at(refl.fobs.astype(np.complex128), out.hkl))

        res_set = ReflectionSet(refl.cell, refl.spacegroup, out.hkl, np.nan_to_num(fobs), np.zeros(len(out.hkl)))
        rho = res_set.to_map(out.fwt, res_set.grid_shape(3.0))
        score = float(np.mean(out.fom))
        return RefineResult(map=res_set.crystal_map(rho, name="cctbx-dm"), hkl=out.hkl, phases=out.phib,
                            amplitudes=np.nan_to_num(fobs), fom=out.fom, score=score, refined=False,
                            info={"solvent_fraction": float(solvent_fraction), "seconds": round(out.seconds, 2),
                                  "messages": messages, "spacegroup": refl.spacegroup.hm,
                                  "score": "mean figure of merit (cctbx gives no success score)"})


@hookimpl
def register_refiners(register):  # type: ignore[no-untyped-def]
    register(CctbxDMRefiner())
