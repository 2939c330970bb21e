"""Built-in refiners (``register_refiners`` hook): in-process density modification, and SHELXE when installed.

* ``density-modification`` — :class:`crysplugins.crystal.refine.DensityModificationRefiner` (numpy + gemmi).
* ``shelxe`` — G. M. Sheldrick's SHELXE run on a starting map (:mod:`crysplugins.runtime.shelxe`),
  registered only when a ``shelxe`` executable is on PATH (or named by ``CRYSPLUGINS_SHELXE``).  Success
  score: the traced model's CC (as a fraction) when SHELXE traced (``refined`` when ≥ 0.20, appendix E),
  otherwise the in-process amplitude CC of the returned phases.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import gemmi
import numpy as np

from crysplugins.crystal.fourier import FourierGrid, cell_d, fourier_grid
from crysplugins.crystal.refine import (REFINED_CC, DensityModificationRefiner, RefineResult, density_modify,
                                        observed_data, solvent_fraction_from_sequence)
from crysplugins.errors import CrysError
from crysplugins.hookspecs import hookimpl
from crysplugins.interface import CrystalMap, ObservedAmplitudes, Reflections, Refiner, Request, Sequence
from crysplugins.runtime.shelxe import ENV_SHELXE, SHELXE_REFINED_CC, run_shelxe, shelxe_executable

__all__ = ["ENV_SHELXE", "ShelxeRefiner", "refiner_for", "register_refiners"]


class ShelxeRefiner:
    """Runs SHELXE density modification (and optional autotracing) on a starting map."""

    name = "shelxe"
    summary = "SHELXE density modification from starting phases (external program; found on PATH)."

    def __init__(self, executable: str | None = None) -> None:
        self.executable = executable or shelxe_executable()

    def refine(self, cmap: CrystalMap | None, reflections: Reflections | ObservedAmplitudes,
               solvent_fraction: float | None = None, sequence: Sequence | str | None = None, cycles: int = 20,
               trace_cycles: int = 0, phases: np.ndarray | None = None, extra_args: tuple[str, ...] = (),
               timeout: float = 3600, keep_dir: str | Path | None = None, **_: Any) -> RefineResult:
        """SHELXE from a starting map (or starting ``phases``, degrees); ``cycles`` is ``-m``, ``trace_cycles``
        ``-a``."""
        if not self.executable:
            raise CrysError("SHELXE is not installed (no 'shelxe' on PATH and CRYSPLUGINS_SHELXE is not set).")
        msgs: list[str] = []
        cell, hkl, fobs = observed_data(reflections, msgs)
        seq = Sequence(sequence) if isinstance(sequence, str) else sequence
        if solvent_fraction is None:
            if seq is None:
                raise CrysError("SHELXE needs a solvent fraction or a sequence.")
            solvent_fraction = solvent_fraction_from_sequence(seq, cell)
        fg = fourier_grid(cell, hkl, d_min=float(np.min(cell_d(cell, hkl))))
        if phases is None:
            phases = _starting_phases(cmap, fg, cell, hkl)
        run = run_shelxe(self.executable, cell, hkl, fobs, phases, float(solvent_fraction), seq, cycles,
                         trace_cycles, extra_args, timeout, keep_dir)
        out_phi = np.nan_to_num(run.phases)
        rho = fg.to_map(np.where(run.returned, fobs, 0.0) * np.exp(1j * np.deg2rad(out_phi)))
        trace_cc = run.trace_cc
        if trace_cc is not None:
            score, refined = trace_cc, trace_cc >= SHELXE_REFINED_CC
        else:
            observed = ObservedAmplitudes(cell, gemmi.SpaceGroup("P 1"), hkl, fobs)
            check = density_modify(None, observed, phases=out_phi, solvent_fraction=solvent_fraction, cycles=1)
            score, refined = check.score, check.score >= REFINED_CC
        out_map = CrystalMap.from_array(rho.astype(np.float32), cell, gemmi.SpaceGroup("P 1"), name="refined",
                                        units="e/Å³")
        return RefineResult(map=out_map, hkl=hkl.astype(np.int32), phases=out_phi, amplitudes=fobs, fom=run.fom,
                            score=float(score), refined=bool(refined),
                            history=[{"cycle": int(cycles), "cc": float(score)}],
                            info={"program": "shelxe", "command": run.command, "solvent_fraction": solvent_fraction,
                                  "trace_cc": trace_cc, "reflections_returned": int(run.returned.sum()),
                                  "messages": msgs})


def _starting_phases(cmap: CrystalMap | None, fg: FourierGrid, cell: gemmi.UnitCell, hkl: np.ndarray) -> np.ndarray:
    """Phases (degrees) of the starting map's Fourier coefficients at ``hkl``."""
    if cmap is None:
        raise CrysError("The SHELXE refiner needs a starting map or starting phases.")
    src = FourierGrid(hkl, cmap.shape, float(cell.volume)) if cmap.shape != fg.shape else fg
    try:
        f0, _ = src.from_map(np.asarray(cmap.array, dtype=np.float64))
    except ValueError:
        raise CrysError("The starting map's grid is too coarse for the reflections' resolution.") from None
    return np.degrees(np.angle(f0))


@hookimpl
def register_refiners(register: Callable[[Refiner], None]) -> None:
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
