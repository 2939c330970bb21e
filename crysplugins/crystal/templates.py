"""Template maps for recycling runs: B-factor blurring and the post-processing of appendix E.

RecCrysFormer paper (000), appendix E: refined maps used as recycling templates were further flattened
in the solvent region with two masks — (1) the voxels with positive values of the refined map, and
(2) the voxels of the map blurred with a crystallographic B factor of 25 Å² whose density is more than
1.25 rmsd above the blurred map's mean.  The map is shifted by +1.23, multiplied by both masks, shifted
back by −1.23, blended as 0.95·modified + 0.05·raw, and scaled to [−1, 1].

Choice where the paper is silent: the offset 1.23 and the 1.25 rmsd cut only make sense on a map of
known scale; SHELXE maps are roughly in rmsd units, so by default the raw map is first put on a
zero-mean, unit-rmsd scale (``standardise=True``).  Scaling to [−1, 1] is min–max over the cell.
"""
from __future__ import annotations

import numpy as np
import gemmi

from crysplugins.interface import CrystalMap


def reciprocal_s2(shape: tuple[int, int, int], cell: gemmi.UnitCell) -> np.ndarray:
    """|s|² = 1/d² (Å⁻²) of every bin of a full complex FFT of a map of ``shape`` sampled on ``cell``."""
    freqs = [np.fft.fftfreq(n, d=1.0 / n) for n in shape]  # integer Miller indices h, k, l
    h, k, l = np.meshgrid(*freqs, indexing="ij")
    frac = np.array(cell.frac.mat)  # Cartesian -> fractional; reciprocal vector s = frac^T h
    sx = frac[0, 0] * h + frac[1, 0] * k + frac[2, 0] * l
    sy = frac[0, 1] * h + frac[1, 1] * k + frac[2, 1] * l
    sz = frac[0, 2] * h + frac[1, 2] * k + frac[2, 2] * l
    return sx * sx + sy * sy + sz * sz


def blur(array: np.ndarray, cell: gemmi.UnitCell, b_factor: float) -> np.ndarray:
    """Blur a periodic map by an isotropic B factor (Å²): F(s) · exp(−B |s|² / 4).

    This is the same attenuation an atom's scattering factor gets from its B factor, so blurring a map
    computed with B₀ by B gives the map computed with B₀ + B.
    """
    if b_factor == 0:
        return np.array(array, dtype=np.float64, copy=True)
    f = np.fft.fftn(np.asarray(array, dtype=np.float64))
    f *= np.exp(-b_factor * reciprocal_s2(array.shape, cell) / 4.0)
    return np.fft.ifftn(f).real


def scale_to_unit_range(array: np.ndarray) -> np.ndarray:
    """Min–max scale to [−1, 1] (a constant map becomes all zeros)."""
    lo, hi = float(array.min()), float(array.max())
    if hi - lo <= 0:
        return np.zeros_like(array, dtype=np.float32)
    return (2.0 * (array - lo) / (hi - lo) - 1.0).astype(np.float32)


def postprocess_template(array: np.ndarray, cell: gemmi.UnitCell, b_factor: float = 25.0,
                         rmsd_cut: float = 1.25, offset: float = 1.23, raw_weight: float = 0.05,
                         standardise: bool = True) -> np.ndarray:
    """Appendix E post-processing of a refined map into a recycling template (values in [−1, 1]).

    ``array`` is the refined map on the whole cell (axes a, b, c); ``cell`` gives the B-factor blur its
    reciprocal metric.  Returns float32.
    """
    raw = np.asarray(array, dtype=np.float64)
    if standardise:
        rms = raw.std()
        raw = (raw - raw.mean()) / (rms if rms > 0 else 1.0)
    positive = raw > 0
    blurred = blur(raw, cell, b_factor)
    strong = blurred > blurred.mean() + rmsd_cut * blurred.std()
    modified = (raw + offset) * positive * strong - offset
    combined = (1.0 - raw_weight) * modified + raw_weight * raw
    return scale_to_unit_range(combined)


def template_map(cmap: CrystalMap, **options: float) -> CrystalMap:
    """:func:`postprocess_template` on a :class:`CrystalMap`, keeping cell, space group and grid."""
    out = postprocess_template(cmap.array, cmap.cell, **options)
    return CrystalMap.from_array(out, cmap.cell, cmap.spacegroup, name=f"{cmap.name}_template")
