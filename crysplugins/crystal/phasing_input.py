"""Turn a user's phasing map or MTZ (amplitudes + phases + optional FOM) into a map on the Shannon grid.

Used by the solvent-mask predictors (Skubák 2024, section 2.1: phasing maps are gridded at the Shannon
rate of the data, spacing d_min / 2).  Units: Å, degrees.

* MTZ: coefficients FOM x F exp(i PHI) (FOM = 1 when absent), d_min from the data (or a larger one
  given), gridded with gemmi's FFT on a grid that suits the space group.
* CCP4 map: kept when its grid already is the Shannon grid of d_min, else Fourier-resampled (gemmi FFT,
  coefficients to d_min).  d_min defaults to 3 x the largest grid spacing (the usual d/3 map sampling),
  never finer than 2 x the spacing (what the grid can hold).

:func:`resample_periodic` brings a per-voxel result back to the user's grid (periodic trilinear
interpolation in fractional coordinates).  numpy + gemmi only.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import gemmi
import numpy as np

from crysplugins.crystal.io import make_mtz
from crysplugins.errors import CrysError
from crysplugins.interface import CrystalMap, Reflections


def shannon_grid_shape(cell: gemmi.UnitCell, spacegroup: gemmi.SpaceGroup, d_min: float,
                       rate: float = 2.0) -> tuple[int, int, int]:
    """Grid size at spacing d_min / rate Å (rate 2 = Shannon), rounded up to FFT- and symmetry-friendly sizes."""
    grid = gemmi.FloatGrid()
    grid.spacegroup = spacegroup
    grid.set_unit_cell(cell)
    grid.set_size_from_spacing(d_min / rate, gemmi.GridSizeRounding.Up)
    return (grid.nu, grid.nv, grid.nw)


@dataclass
class PhasingInput:
    """The map a mask predictor works on, and where its result must go back to."""

    map: CrystalMap                      # on the Shannon grid of d_min
    d_min: float                         # Å
    target: CrystalMap | None = None     # the user's map grid (None: output on ``map``'s grid)
    mean_fom: float | None = None
    messages: list[str] = field(default_factory=list)


def _check_map_values(arr: np.ndarray, what: str) -> None:
    if not np.all(np.isfinite(arr)):
        raise CrysError(f"The {what} holds values that are not numbers (NaN or infinite).")
    if float(arr.std()) <= 0.0:
        raise CrysError(f"The {what} is flat (all values equal); it holds no density to segment.")


def from_reflections(refl: Reflections, d_min: float | None = None, rate: float = 2.0) -> PhasingInput:
    """FOM-weighted map from amplitudes, phases (degrees) and optional FOM on the Shannon grid."""
    if not refl.has("PHI"):
        raise CrysError("The reflections have no phase column (type P); a solvent mask needs phases "
                        "(e.g. FP, PHIB and FOM), or give a map instead.")
    f = refl.amplitudes()
    phi = refl.values("PHI")
    fom = refl.values("FOM") if refl.has("FOM") else np.ones_like(f)
    hkl = refl.miller_array()
    cell, sg = refl.cell, refl.spacegroup or gemmi.SpaceGroup("P 1")
    d = np.asarray(cell.calculate_d_array(hkl), dtype=np.float64)
    ok = np.isfinite(f) & np.isfinite(phi) & np.isfinite(fom) & (f >= 0)
    messages = []
    if d_min is not None:
        ok &= d >= d_min
    if ok.sum() < 10:
        raise CrysError("The reflections hold fewer than 10 usable amplitude/phase pairs.")
    dm = float(d[ok].min())
    coeff = f[ok] * np.clip(fom[ok], 0.0, 1.0)
    mtz = make_mtz(cell, sg, hkl[ok], {"FB": ("F", coeff), "PHI": ("P", phi[ok])})
    shape = shannon_grid_shape(cell, sg, dm, rate)
    grid = mtz.transform_f_phi_to_map("FB", "PHI", exact_size=list(shape))
    cmap = CrystalMap(grid=grid, name=f"{refl.name}-phasing", units="e/Å³ x FOM")
    _check_map_values(cmap.array, "map computed from the reflections")
    mean_fom = float(np.mean(fom[ok])) if refl.has("FOM") else None
    messages.append(f"map from {int(ok.sum())} reflections to {dm:.2f} Å "
                    f"({'FOM-weighted' if refl.has('FOM') else 'not weighted by a FOM'}), grid {list(shape)}")
    return PhasingInput(map=cmap, d_min=dm, target=None, mean_fom=mean_fom, messages=messages)


def from_map(cmap: CrystalMap, d_min: float | None = None, rate: float = 2.0) -> PhasingInput:
    """The map resampled to the Shannon grid of ``d_min`` (Å); the result goes back to the map's grid."""
    _check_map_values(cmap.array, f"map {cmap.name}")
    spacing = max(cmap.spacing())
    messages = []
    if d_min is None:
        d_min = 3.0 * spacing
        messages.append(f"resolution not given: assumed {d_min:.2f} Å (3 x the grid spacing {spacing:.2f} Å)")
    if d_min < 2.0 * spacing:
        messages.append(f"resolution {d_min:.2f} Å is finer than the grid holds; using {2 * spacing:.2f} Å")
        d_min = 2.0 * spacing
    sg = cmap.spacegroup or gemmi.SpaceGroup("P 1")
    shape = shannon_grid_shape(cmap.cell, sg, d_min, rate)
    if tuple(shape) == tuple(cmap.shape):
        return PhasingInput(map=cmap, d_min=float(d_min), target=None, messages=messages)
    asu = gemmi.transform_map_to_f_phi(cmap.grid, half_l=True).prepare_asu_data(dmin=d_min)
    grid = asu.transform_f_phi_to_map(exact_size=list(shape))
    grid.spacegroup = sg
    out = CrystalMap(grid=grid, name=f"{cmap.name}-shannon", units=cmap.units)
    messages.append(f"map resampled from grid {list(cmap.shape)} to {list(shape)} (d_min {d_min:.2f} Å / {rate:g})")
    return PhasingInput(map=out, d_min=float(d_min), target=cmap, messages=messages)


def resample_periodic(arr: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """Periodic trilinear interpolation of a whole-cell array onto another whole-cell grid ``shape``."""
    src = np.asarray(arr, dtype=np.float64)
    if tuple(src.shape) == tuple(shape):
        return src.astype(np.float32)
    out = src
    for axis, (n_src, n_dst) in enumerate(zip(src.shape, shape)):
        x = np.arange(n_dst) * (n_src / n_dst)          # destination points in source index units
        i0 = np.floor(x).astype(int)
        t = (x - i0).reshape([-1 if a == axis else 1 for a in range(3)])
        a = np.take(out, i0 % n_src, axis=axis)
        b = np.take(out, (i0 + 1) % n_src, axis=axis)
        out = a * (1.0 - t) + b * t
    return out.astype(np.float32)
