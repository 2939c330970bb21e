"""Structure factors, electron density and Patterson maps on one shared grid (gemmi + numpy FFT).

Paper 000, appendix B ("Map Generation and Normalization"): structure factors of a fragment to d_min,
then the electron density and the Patterson map (FFT of |F|^2) on the same grid.  The paper ran
``gemmi sfcalc`` and CCP4 ``fft`` per example; here everything happens in-process:

1. gemmi ``DensityCalculatorX`` puts the atoms (IT92 X-ray form factors, isotropic B) on a grid of the
   cell (spacing <= ``MAX_SF_SPACING``; a finer grid is used automatically when the output grid is
   coarser, so aliasing stays negligible for B >= 20 Å^2);
2. numpy ``rfftn`` gives the structure factors on that grid; reflections beyond d_min and F(000) are
   zeroed;
3. the inverse FFT of F gives the resolution-limited density (e/Å^3), the inverse FFT of |F|^2 the
   Patterson function P(u) = (1/V) sum_h |F(h)|^2 cos(2 pi h.u)  (e^2/Å^3), which is the (continuous)
   autocorrelation of the density: P(u) = integral rho(x) rho(x+u) dV.

Conventions: ``F_cryst(h) = (V / N) * conj(rfftn(rho))[h]`` (gemmi / crystallographic sign, checked
against gemmi's direct summation in the tests).  Grids are indexed (u, v, w) along (a, b, c).
"""
from __future__ import annotations

from typing import Sequence

import gemmi
import numpy as np

from crysplugins.interface import CrystalMap, Reflections

#: largest grid spacing (Å) on which atoms are sampled before the FFT; with B = 20 Å^2 the aliasing
#: error of a 0.5 Å grid is ~1e-5 of F at 1.5 Å (checked against direct summation in tests/test_maps.py)
MAX_SF_SPACING = 0.5
#: gemmi DensityCalculator cutoff (relative density at which an atom's Gaussian sum is truncated); 1e-4
#: instead of gemmi's 1e-5 saves ~25 % of the time for a max error of ~3e-4 x max|F| (measured)
DENSITY_CUTOFF = 1e-4


def reciprocal_inv_d2(cell: gemmi.UnitCell, shape: Sequence[int], half: bool = True) -> np.ndarray:
    """1/d^2 (Å^-2) for every Miller index of an FFT grid of ``shape`` (rfft layout when ``half``)."""
    frac = np.array(cell.frac.mat.tolist())  # x_frac = frac @ x_cart  ->  s = frac.T @ h
    g = frac @ frac.T  # reciprocal metric tensor: 1/d^2 = h^T g h
    nu, nv, nw = shape
    h = np.fft.fftfreq(nu, 1.0 / nu)[:, None, None]
    k = np.fft.fftfreq(nv, 1.0 / nv)[None, :, None]
    l = (np.fft.rfftfreq(nw, 1.0 / nw) if half else np.fft.fftfreq(nw, 1.0 / nw))[None, None, :]
    return (g[0, 0] * h * h + g[1, 1] * k * k + g[2, 2] * l * l
            + 2 * (g[0, 1] * h * k + g[0, 2] * h * l + g[1, 2] * k * l))


def resolution_mask(cell: gemmi.UnitCell, shape: Sequence[int], d_min: float) -> np.ndarray:
    """Boolean rfft-layout mask of reflections with d >= d_min, F(000) and Nyquist planes excluded."""
    inv_d2 = reciprocal_inv_d2(cell, shape)
    mask = inv_d2 <= 1.0 / d_min**2 * (1 + 1e-9)
    mask[0, 0, 0] = False
    nu, nv, nw = shape
    if nu % 2 == 0:
        mask[nu // 2] = False
    if nv % 2 == 0:
        mask[:, nv // 2] = False
    if nw % 2 == 0:
        mask[:, :, nw // 2] = False
    return mask


def _model_for(positions: np.ndarray, elements: Sequence[str], b_iso: float) -> gemmi.Model:
    model = gemmi.Model("1")
    chain = gemmi.Chain("A")
    res = gemmi.Residue()
    res.name = "UNK"
    for i, (p, el) in enumerate(zip(positions, elements)):
        at = gemmi.Atom()
        at.name = f"X{i}"
        at.element = gemmi.Element(el)
        at.pos = gemmi.Position(float(p[0]), float(p[1]), float(p[2]))
        at.b_iso = b_iso
        at.occ = 1.0
        res.add_atom(at)
    chain.add_residue(res)
    model.add_chain(chain)
    return model


def fft_structure_factors(model_or_atoms, cell: gemmi.UnitCell, shape: Sequence[int], d_min: float,
                          b_iso: float = 20.0) -> np.ndarray:
    """Structure factors on the rfft layout of grid ``shape``, in numpy-FFT units (sum over voxels).

    ``model_or_atoms`` is a gemmi.Model or a tuple ``(positions (n,3) Å, elements)`` (then every atom
    gets ``b_iso``).  Reflections beyond ``d_min`` and F(000) are zero.  Multiply by V/N and conjugate
    for crystallographic F (see :func:`crystallographic_f`).
    """
    model = model_or_atoms if isinstance(model_or_atoms, gemmi.Model) else _model_for(*model_or_atoms, b_iso)
    shape = tuple(int(n) for n in shape)
    spacing = np.array([cell.a, cell.b, cell.c]) / np.array(shape)
    k = max(1, int(np.ceil(spacing.max() / MAX_SF_SPACING - 1e-6)))
    fine = tuple(n * k for n in shape)
    dc = gemmi.DensityCalculatorX()
    dc.d_min = 0.0  # keep the grid we set
    dc.blur = 0.0
    dc.cutoff = DENSITY_CUTOFF
    dc.grid.set_unit_cell(cell)
    dc.grid.set_size(*fine)
    dc.put_model_density_on_grid(model)
    rho = np.array(dc.grid, copy=False)
    f = np.fft.rfftn(rho)
    if k > 1:
        iu = np.fft.fftfreq(shape[0], 1.0 / shape[0]).astype(int) % fine[0]
        iv = np.fft.fftfreq(shape[1], 1.0 / shape[1]).astype(int) % fine[1]
        f = f[np.ix_(iu, iv, np.arange(shape[2] // 2 + 1))] / k**3
    f *= resolution_mask(cell, shape, d_min)
    return f


def maps_from_f(f: np.ndarray, cell: gemmi.UnitCell, shape: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """(density e/Å^3, Patterson e^2/Å^3) float32 arrays from rfft-layout structure factors ``f``."""
    n = int(np.prod(shape))
    density = np.fft.irfftn(f, s=shape, axes=(0, 1, 2))
    patterson = np.fft.irfftn((f * f.conj()).real, s=shape, axes=(0, 1, 2)) * (cell.volume / n)
    return density.astype(np.float32), patterson.astype(np.float32)


def crystallographic_f(f: np.ndarray, cell: gemmi.UnitCell, shape: Sequence[int], d_min: float
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Miller indices (m,3) of one P1 hemisphere (gemmi's asu) and complex F(h) (electrons)."""
    mask = resolution_mask(cell, shape, d_min)
    nu, nv, nw = shape
    iu, iv, iw = np.nonzero(mask)
    h = np.fft.fftfreq(nu, 1.0 / nu).astype(int)[iu]
    k = np.fft.fftfreq(nv, 1.0 / nv).astype(int)[iv]
    l = iw.astype(int)
    keep = (l > 0) | ((l == 0) & ((k > 0) | ((k == 0) & (h > 0))))
    vals = np.conj(f[iu, iv, iw][keep]) * (cell.volume / (nu * nv * nw))
    hkl = np.stack([h[keep], k[keep], l[keep]], axis=1)
    return hkl, vals


def structure_factors(structure: gemmi.Structure, d_min: float, method: str = "fft",
                      shape: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Structure factors of the first model of ``structure`` (its cell, P1) to ``d_min`` (Å).

    Returns Miller indices (m,3) and complex F in electrons.  ``method='fft'`` (default, fast) samples
    atoms on a grid and FFTs; ``'direct'`` sums over atoms with gemmi's StructureFactorCalculatorX.
    """
    cell = structure.cell
    if shape is None:
        shape = grid_shape(cell, d_min / 3.0, multiple=2)
    f = fft_structure_factors(structure[0], cell, shape, d_min)
    hkl, vals = crystallographic_f(f, cell, shape, d_min)
    if method == "direct":
        calc = gemmi.StructureFactorCalculatorX(cell)
        vals = np.array([calc.calculate_sf_from_model(structure[0], [int(a), int(b), int(c)])
                         for a, b, c in hkl])
    elif method != "fft":
        raise ValueError(f"unknown method {method!r}")
    return hkl, vals


def invert_grid(a: np.ndarray) -> np.ndarray:
    """A whole-cell map inverted through the cell origin on its last three axes: voxel i -> (N - i) mod N.

    On the periodic grid this is ρ(−x), which equals the inversion through the cell centre, x -> 1 − x
    (fractional); a centre of mass at (1/2, 1/2, 1/2) stays there.  Structure factors become conj(F(h)):
    same amplitudes, phases −φ.
    """
    axes = (-3, -2, -1)
    return np.roll(np.flip(np.asarray(a), axis=axes), 1, axis=axes)


def density_centroid(a: np.ndarray, z_min: float = 1.5, cell: gemmi.UnitCell | None = None) -> np.ndarray:
    """Fractional centroid (u, v, w) of a fragment's density in a whole-cell map, from the cell centre.

    A map is periodic, so a fragment may straddle the cell boundary (any origin that charge flipping or
    an origin error left it at) or nearly fill its cell; a centroid of the voxels as they lie in the cell
    is then meaningless.  The fragment is rebuilt as one object instead: the blobs of density above
    ``z_min`` rms are flood-filled on the periodic grid (gemmi's ``find_blobs_by_flood_fill``, which
    follows a blob across the boundary), and each smaller blob joins at the lattice image nearest to the
    centre of those already joined (Cartesian distance in ``cell``; without a cell, voxel units).  The
    centroid is the score-weighted mean of the blob centroids, wrapped into (−1/2, 1/2].  Blobs under 5 %
    of the largest one's score (noise) are left out.

    On the true maps of held-out 2–15-residue fragments shifted by random fractions this puts the map
    back at the centre-of-mass placement of the training data (paper 000, appendix B) with a map Pearson
    of 0.997–0.999 (``benchmarks/bench_placement.py``).
    """
    z = np.asarray(a, dtype=np.float64)
    z = (z - z.mean()) / (z.std() + 1e-12)
    cell = cell or gemmi.UnitCell(*z.shape, 90, 90, 90)
    grid = gemmi.FloatGrid(z.astype(np.float32), cell, gemmi.SpaceGroup("P 1"))
    blobs = sorted(gemmi.find_blobs_by_flood_fill(grid, z_min, min_volume=0.0, min_score=0.0),
                   key=lambda blob: -blob.score)
    if not blobs:
        return np.zeros(3)
    points = [np.array(cell.fractionalize(blobs[0].centroid).tolist())]
    weights = [blobs[0].score]
    for blob in blobs[1:]:
        if blob.score < 0.05 * blobs[0].score:
            continue
        centre = np.average(points, axis=0, weights=weights)
        points.append(_nearest_image(np.array(cell.fractionalize(blob.centroid).tolist()), centre, cell))
        weights.append(blob.score)
    u = np.average(points, axis=0, weights=weights) - 0.5
    return u - np.round(u)


_IMAGES = np.array([[i, j, k] for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)], float)


def _nearest_image(frac: np.ndarray, centre: np.ndarray, cell: gemmi.UnitCell) -> np.ndarray:
    """The lattice image of fractional point ``frac`` nearest (in Å) to fractional point ``centre``."""
    candidates = frac - np.round(frac - centre) + _IMAGES
    orth = np.array(cell.orth.mat.tolist())
    distances = np.linalg.norm((candidates - centre) @ orth.T, axis=1)
    return candidates[int(np.argmin(distances))]


def shift_grid(a: np.ndarray, shift: Sequence[float]) -> np.ndarray:
    """A whole-cell map translated by a fractional ``shift`` (any fraction of a voxel): ρ'(x) = ρ(x − t),
    by a phase ramp on its Fourier coefficients (exact for a band-limited map)."""
    a = np.asarray(a, dtype=np.float64)
    spectrum = np.fft.rfftn(a)
    n = a.shape
    k = np.meshgrid(np.fft.fftfreq(n[0]) * n[0], np.fft.fftfreq(n[1]) * n[1], np.fft.rfftfreq(n[2]) * n[2],
                    indexing="ij")
    ramp = np.exp(-2j * np.pi * sum(float(t) * ki for t, ki in zip(shift, k)))
    return np.fft.irfftn(spectrum * ramp, n, axes=(0, 1, 2))


def centre_density(a: np.ndarray, z_min: float = 1.5,
                   cell: gemmi.UnitCell | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(map translated so that its fragment's centroid is at the cell centre, the fractional shift).

    The RecCrysFormer training data put each fragment's centre of mass at the cell centre (paper 000,
    appendix B), so a predicted or density-modified map of a fragment is put there too: density
    modification in P 1 keeps whatever origin error its starting map had, charge flipping leaves an
    arbitrary origin, and the map Pearson (eq. 7) counts every voxel at a fixed origin.  Inversion
    through the centre (:func:`invert_grid`) then keeps the centroid where it is.  Units: fractional
    coordinates; ``z_min`` in rms units; see :func:`density_centroid`.
    """
    shift = -density_centroid(a, z_min, cell)
    return shift_grid(a, shift), shift


def grid_shape(cell: gemmi.UnitCell, spacing: float, multiple: int = 2) -> tuple[int, int, int]:
    """Smallest grid with spacing <= ``spacing`` (Å) along a, b, c and sizes a multiple of ``multiple``."""
    out = []
    for length in (cell.a, cell.b, cell.c):
        n = int(np.ceil(length / spacing - 1e-6))
        out.append(int(-(-n // multiple) * multiple))
    return tuple(out)


def density_map(structure: gemmi.Structure, d_min: float, shape: Sequence[int] | None = None,
                name: str = "density") -> CrystalMap:
    """Resolution-limited electron density (e/Å^3, F(000) omitted) of a P1 structure as a CrystalMap."""
    cell = structure.cell
    shape = tuple(shape) if shape is not None else grid_shape(cell, d_min / 3.0)
    f = fft_structure_factors(structure[0], cell, shape, d_min)
    density, _ = maps_from_f(f, cell, shape)
    return CrystalMap.from_array(density, cell, gemmi.SpaceGroup("P 1"), name)


def patterson_map(amplitudes_or_mtz, cell: gemmi.UnitCell | None = None,
                  grid_shape_: Sequence[int] | None = None, d_min: float | None = None,
                  name: str = "patterson") -> CrystalMap:
    """Patterson map P(u) = (1/V) sum |F|^2 cos(2 pi h.u) (e^2/Å^3 when F is in electrons), P1 grid.

    ``amplitudes_or_mtz`` is a :class:`Reflections`, a ``gemmi.Mtz`` (first F-type column), or a tuple
    ``(hkl (m,3), F (m,))`` of one hemisphere (Friedel mates are added).  F(000) is omitted.
    Symmetry-equivalent reflections of a non-P1 MTZ are expanded to P1 first.
    """
    if isinstance(amplitudes_or_mtz, Reflections):
        mtz = amplitudes_or_mtz.mtz
        label = amplitudes_or_mtz.columns.get("F")
    elif isinstance(amplitudes_or_mtz, gemmi.Mtz):
        mtz, label = amplitudes_or_mtz, None
    else:
        mtz, label = None, None
    if mtz is not None:
        if label is None:
            label = next(c.label for c in mtz.columns if c.type == "F")
        cell = cell or mtz.cell
        data = np.array(mtz, copy=False)
        labels = [c.label for c in mtz.columns]
        hkl = data[:, :3].astype(int)
        amp = data[:, labels.index(label)].astype(float)
        ok = np.isfinite(amp)
        hkl, amp = hkl[ok], amp[ok]
        if mtz.spacegroup is not None and mtz.spacegroup.number != 1:
            ops = mtz.spacegroup.operations()
            hkl = np.concatenate([np.array([op.apply_to_hkl([int(x) for x in r]) for r in hkl])
                                  for op in ops])
            amp = np.tile(amp, len(list(ops)))
    else:
        hkl, amp = amplitudes_or_mtz
        hkl = np.asarray(hkl, int)
        amp = np.abs(np.asarray(amp))
    if cell is None:
        raise ValueError("a unit cell is needed for a Patterson map from bare amplitudes")
    if grid_shape_ is None:
        if d_min is None:
            d_min = min(cell.calculate_d([int(x) for x in r]) for r in hkl)
        grid_shape_ = grid_shape(cell, d_min / 3.0)
    shape = tuple(int(n) for n in grid_shape_)
    nu, nv, nw = shape
    f2 = np.zeros((nu, nv, nw), dtype=np.float64)
    i2 = amp**2
    for sign in (1, -1):
        hh = sign * hkl
        np.add.at(f2, (hh[:, 0] % nu, hh[:, 1] % nv, hh[:, 2] % nw), i2)
    f2[0, 0, 0] = 0.0
    # duplicated symmetry mates were added more than once: de-duplicate by counting
    if mtz is not None and mtz.spacegroup is not None and mtz.spacegroup.number != 1:
        cnt = np.zeros_like(f2)
        for sign in (1, -1):
            hh = sign * hkl
            np.add.at(cnt, (hh[:, 0] % nu, hh[:, 1] % nv, hh[:, 2] % nw), 1.0)
        f2 = np.where(cnt > 0, f2 / np.maximum(cnt, 1), 0.0)
    pat = np.fft.ifftn(f2).real * (nu * nv * nw) / cell.volume
    return CrystalMap.from_array(pat.astype(np.float32), cell, gemmi.SpaceGroup("P 1"), name)
