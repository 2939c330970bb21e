"""Fast P1 Fourier transforms between reflection lists and whole-cell grids (numpy FFT).

Written by hand (gemmi has ``transform_f_phi_grid_to_map``/``transform_map_to_f_phi`` on ``gemmi.Mtz``
and ``ReciprocalComplexGrid`` objects) because iterative phasing (charge flipping, density modification)
runs hundreds of transforms of the same reflection list, and numpy ``rfftn`` on plain arrays with a
precomputed index list is several times faster than building gemmi grids each cycle.

Conventions are gemmi's (and the International Tables'), checked against gemmi in ``tests/test_metrics.py``:

* F(h) = ∫_cell ρ(x) exp(+2πi h·x) dx          (electrons; x fractional, h integer Miller index)
* ρ(x) = (1/V) Σ_h F(h) exp(−2πi h·x)          (e/Å³; V cell volume in Å³)

Phases are in radians inside this module; public metrics speak degrees.
"""
from __future__ import annotations

from dataclasses import dataclass

import gemmi
import numpy as np

from crysplugins.interface import usable_reflections  # noqa: F401 - one rule, kept beside ObservedAmplitudes

_GOOD = sorted({2 ** a * 3 ** b * 5 ** c for a in range(12) for b in range(8) for c in range(6)
                if 2 ** a * 3 ** b * 5 ** c <= 4096})


def good_fft_size(n: int, even: bool = True) -> int:
    """Smallest size >= n with prime factors 2, 3 and 5 only (even when ``even``)."""
    for m in _GOOD:
        if m >= n and (not even or m % 2 == 0):
            return m
    return int(n)


def grid_shape(cell: gemmi.UnitCell, d_min: float, rate: float = 3.0,
               hkl: np.ndarray | None = None) -> tuple[int, int, int]:
    """Grid size along a, b, c for spacing about d_min/rate Å (paper appendix B: rate 3 → 0.5 Å at 1.5 Å).

    The grid always holds every index of ``hkl`` (n > 2·|h|max) so no reflection aliases.
    """
    spacing = d_min / rate
    sizes = []
    for axis, length in enumerate((cell.a, cell.b, cell.c)):
        n = int(np.ceil(length / spacing))
        if hkl is not None and len(hkl):
            n = max(n, 2 * int(np.abs(hkl[:, axis]).max()) + 1)
        sizes.append(good_fft_size(n))
    return tuple(sizes)  # type: ignore[return-value]


def p1_hkl(cell: gemmi.UnitCell, d_min: float) -> np.ndarray:
    """Unique P1 reflections (one of each Friedel pair, no 000) to d_min Å (l>0, or l=0 and h>0, or l=h=0 and k>0)."""
    hmax = [int(np.floor(x / d_min)) + 1 for x in (cell.a, cell.b, cell.c)]
    h, k, l = np.meshgrid(*(np.arange(-m, m + 1) for m in hmax), indexing="ij")
    hkl = np.stack([h.ravel(), k.ravel(), l.ravel()], axis=1)
    d = cell_d(cell, hkl)
    keep = (d >= d_min) & np.isfinite(d)
    hkl = hkl[keep]
    # P1 ASU (gemmi/CCP4): l>0, or l==0 and h>0, or l==0,h==0,k>0
    sel = (hkl[:, 2] > 0) | ((hkl[:, 2] == 0) & (hkl[:, 0] > 0)) | \
          ((hkl[:, 2] == 0) & (hkl[:, 0] == 0) & (hkl[:, 1] > 0))
    return hkl[sel].astype(np.int32)


def cell_d(cell: gemmi.UnitCell, hkl: np.ndarray) -> np.ndarray:
    """Resolution d (Å) of each reflection; d of 000 is inf."""
    s2 = stol2(cell, hkl) * 4.0
    with np.errstate(divide="ignore"):
        return 1.0 / np.sqrt(s2)


def stol2(cell: gemmi.UnitCell, hkl: np.ndarray) -> np.ndarray:
    """(sin θ/λ)² = 1/(4d²) of each reflection, Å⁻²."""
    frac = np.array(cell.frac.mat.tolist())  # rows: fractionalisation matrix
    s = np.asarray(hkl, dtype=np.float64) @ frac  # reciprocal vectors in Å⁻¹ (h·F)
    return 0.25 * np.einsum("ij,ij->i", s, s)


@dataclass
class FourierGrid:
    """A reflection list on a whole-cell grid: fast map ↔ structure-factor transforms for one hkl set.

    ``hkl`` (n, 3) unique reflections (one per Friedel pair, no 000); ``shape`` grid (nu, nv, nw);
    ``volume`` Å³.  Maps are numpy arrays [u, v, w] in e/Å³ when F is in electrons.
    """

    hkl: np.ndarray
    shape: tuple[int, int, int]
    volume: float

    def __post_init__(self) -> None:
        self.hkl = np.asarray(self.hkl, dtype=np.int64).reshape(-1, 3)
        n = np.array(self.shape)
        if np.any(2 * np.abs(self.hkl).max(axis=0, initial=0) >= n):
            raise ValueError(f"grid {self.shape} is too small for the reflections (|h|max {np.abs(self.hkl).max(axis=0)}).")
        nw_half = self.shape[2] // 2 + 1
        h = self.hkl
        # each reflection lives at +h when l>0 (or l==0), its Friedel mate at -h; the rfft half holds l>=0
        pos = h[:, 2] >= 0
        self._plus = np.where(pos)[0]
        self._minus = np.where(~pos)[0]
        ip = np.mod(h[self._plus], n)
        im = np.mod(-h[self._minus], n)
        self._flat_plus = np.ravel_multi_index((ip[:, 0], ip[:, 1], ip[:, 2]), (n[0], n[1], nw_half))
        self._flat_minus = np.ravel_multi_index((im[:, 0], im[:, 1], im[:, 2]), (n[0], n[1], nw_half))
        # l == 0 plane needs both members of a Friedel pair for a Hermitian half-spectrum
        zero = np.where(h[:, 2] == 0)[0]
        iz = np.mod(-h[zero], n)
        self._zero = zero
        self._flat_zero_mate = np.ravel_multi_index((iz[:, 0], iz[:, 1], iz[:, 2]), (n[0], n[1], nw_half))
        self._half_shape = (int(n[0]), int(n[1]), nw_half)
        self.n_voxels = int(np.prod(n))

    def to_map(self, f: np.ndarray, f000: float = 0.0) -> np.ndarray:
        """ρ = (1/V) Σ F(h) exp(−2πi h·x) on the grid from complex F at ``hkl`` (float64 array)."""
        f = np.asarray(f, dtype=np.complex128)
        half = np.zeros(self._half_shape, dtype=np.complex128)
        flat = half.reshape(-1)
        # with X[h] = conj(F(h)) (Hermitian), irfftn(X)[n] = (1/N) conj(Σ F(h) e^{-2πi h·n/N}) = V ρ[n] / N
        flat[self._flat_plus] = np.conj(f[self._plus])
        flat[self._flat_minus] = f[self._minus]  # conj(F(-h)) = F(h)
        flat[self._flat_zero_mate] = f[self._zero]
        flat[0] = f000
        rho = np.fft.irfftn(half, s=self.shape, axes=(0, 1, 2)) * (self.n_voxels / self.volume)
        return rho

    def from_map(self, rho: np.ndarray) -> tuple[np.ndarray, float]:
        """Complex F at ``hkl`` and F000 (electrons) of a grid map ρ (e/Å³): F = (V/N)·conj(rfftn ρ)."""
        r = np.fft.rfftn(np.asarray(rho, dtype=np.float64)).reshape(-1)
        scale = self.volume / self.n_voxels
        f = np.empty(len(self.hkl), dtype=np.complex128)
        f[self._plus] = np.conj(r[self._flat_plus]) * scale
        f[self._minus] = r[self._flat_minus] * scale
        return f, float(r[0].real * scale)


def fourier_grid(cell: gemmi.UnitCell, hkl: np.ndarray, shape: tuple[int, int, int] | None = None,
                 d_min: float | None = None, rate: float = 3.0) -> FourierGrid:
    """A :class:`FourierGrid` for ``hkl`` in ``cell``; the grid is chosen from d_min/rate when not given."""
    hkl = np.asarray(hkl, dtype=np.int64).reshape(-1, 3)
    if shape is None:
        if d_min is None:
            d_min = float(np.nanmin(cell_d(cell, hkl)))
        shape = grid_shape(cell, d_min, rate, hkl)
    return FourierGrid(hkl=hkl, shape=tuple(int(x) for x in shape), volume=float(cell.volume))


def phase_shift(hkl: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """2π h·t (radians) for a fractional shift t: F of ρ(x − t) is F(h)·exp(+2πi h·t)."""
    return 2.0 * np.pi * (np.asarray(hkl, dtype=np.float64) @ np.asarray(shift, dtype=np.float64))
