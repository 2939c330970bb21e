"""Reflections in their space group and the whole-cell maps made from them (gemmi symmetry, numpy FFTs).

A :class:`ReflectionSet` holds one reflection per symmetry-equivalent set (gemmi's reciprocal ASU) with
|F_obs|, σ, centric flags, the centric phase restriction φ_c and the multiplicity ε.  It expands
coefficients to every symmetry mate once per map (F(hR) = F(h)·exp(−2πi h·t) for the operation
x → Rx + t, gemmi's ``Op.phase_shift``), puts them on a whole-cell grid with
:class:`crysplugins.crystal.fourier.FourierGrid`, and reads a map back by averaging the mates' values
into the ASU (which also symmetrises a map that is not quite symmetric).  Grids come from gemmi's
``set_size_from_spacing`` so that they suit the space group.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import gemmi
import numpy as np

from crysplugins.crystal.fourier import FourierGrid
from crysplugins.errors import CrysError
from crysplugins.interface import CrystalMap


def _half_key(hkl: np.ndarray) -> np.ndarray:
    """True where h is in the 'negative' half of Friedel pairs (l<0, or l=0 and h<0, or l=h=0 and k<0)."""
    return (hkl[:, 2] < 0) | ((hkl[:, 2] == 0) & (hkl[:, 0] < 0)) | ((hkl[:, 2] == 0) & (hkl[:, 0] == 0) & (hkl[:, 1] < 0))


def _pack(hkl: np.ndarray) -> np.ndarray:
    h = hkl.astype(np.int64) + 1024
    return (h[:, 0] * 2048 + h[:, 1]) * 2048 + h[:, 2]


@dataclass
class ReflectionSet:
    """Observed reflections of one crystal (see the module docstring).  ``hkl`` (n, 3) in the reciprocal
    ASU, ``fobs`` and ``sigf`` (n,), amplitudes; ``d`` resolution in Å."""

    cell: gemmi.UnitCell
    spacegroup: gemmi.SpaceGroup
    hkl: np.ndarray
    fobs: np.ndarray
    sigf: np.ndarray
    centric: np.ndarray = field(init=False)
    centric_phase: np.ndarray = field(init=False)
    epsilon: np.ndarray = field(init=False)
    d: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.hkl = np.asarray(self.hkl, dtype=np.int32).reshape(-1, 3)
        ops = self.spacegroup.operations()
        self.centric = np.asarray(ops.centric_flag_array(self.hkl), dtype=bool)
        self.epsilon = np.asarray(ops.epsilon_factor_array(self.hkl), dtype=np.float64)
        self.d = 1.0 / np.sqrt(np.asarray(self.cell.calculate_1_d2_array(self.hkl), dtype=np.float64))
        self._expand()

    @property
    def d_min(self) -> float:
        return float(self.d.min())

    def _expand(self) -> None:
        """Symmetry mates in P1 (one per Friedel pair): index of the ASU source, phase shift, conjugation."""
        src, p1, shift, conj = [], [], [], []
        n = len(self.hkl)
        idx = np.arange(n)
        centric_phase = np.zeros(n)
        for op in self.spacegroup.operations():
            rot = np.array(op.rot, dtype=np.int64) // op.DEN
            h2 = self.hkl.astype(np.int64) @ rot
            ph = -2.0 * np.pi * (self.hkl.astype(np.float64) @ (np.array(op.tran, dtype=np.float64) / op.DEN))
            # centric restriction: where hR = -h, F(-h) = F(h)exp(i ph) gives φ = -ph/2 (mod π)
            anti = np.all(h2 == -self.hkl, axis=1)
            centric_phase[anti] = -ph[anti] / 2.0
            neg = _half_key(h2)
            h2 = np.where(neg[:, None], -h2, h2)
            src.append(idx), p1.append(h2), shift.append(np.where(neg, -ph, ph)), conj.append(neg)
        src_a, p1_a = np.concatenate(src), np.concatenate(p1)
        shift_a, conj_a = np.concatenate(shift), np.concatenate(conj)
        _, first = np.unique(_pack(p1_a), return_index=True)
        self._src, self._p1 = src_a[first], p1_a[first]
        self._shift, self._conj = shift_a[first], conj_a[first]
        self._count = np.bincount(self._src, minlength=n).astype(np.float64)
        self.centric_phase = np.mod(centric_phase, np.pi)
        self._grids: dict[tuple[int, int, int], FourierGrid] = {}

    # ------------------------------------------------------------------------------------ grids and maps

    def grid_shape(self, rate: float = 3.0, d_min: float | None = None) -> tuple[int, int, int]:
        """Grid at spacing d_min/rate Å, rounded up to FFT- and space-group-friendly sizes by gemmi."""
        g = gemmi.FloatGrid()
        g.spacegroup = self.spacegroup
        g.set_unit_cell(self.cell)
        g.set_size_from_spacing((d_min or self.d_min) / rate, gemmi.GridSizeRounding.Up)
        shape = (g.nu, g.nv, g.nw)
        if np.any(2 * np.abs(self._p1).max(axis=0) >= np.array(shape)):
            raise CrysError(f"The grid {shape} is too coarse for these reflections.")
        return shape

    def _fourier(self, shape: tuple[int, int, int]) -> FourierGrid:
        if shape not in self._grids:
            self._grids[shape] = FourierGrid(self._p1, shape, float(self.cell.volume))
        return self._grids[shape]

    def expand(self, f: np.ndarray) -> np.ndarray:
        """Complex coefficients of the ASU reflections → their P1 mates (one per Friedel pair)."""
        g = np.asarray(f, dtype=np.complex128)[self._src]
        g = np.where(self._conj, np.conj(g), g)
        return g * np.exp(1j * self._shift)

    def to_map(self, f: np.ndarray, shape: tuple[int, int, int], f000: float = 0.0) -> np.ndarray:
        """ρ (e/Å³ when F is in electrons) on a whole-cell grid from ASU coefficients ``f``."""
        return self._fourier(shape).to_map(self.expand(f), f000)

    def from_map(self, rho: np.ndarray) -> np.ndarray:
        """ASU coefficients of a whole-cell map: the mates' values mapped back and averaged."""
        fp1, _ = self._fourier(tuple(rho.shape)).from_map(rho)
        back = fp1 * np.exp(-1j * self._shift)
        back = np.where(self._conj, np.conj(back), back)
        n = len(self.hkl)
        re = np.bincount(self._src, weights=back.real, minlength=n)
        im = np.bincount(self._src, weights=back.imag, minlength=n)
        return (re + 1j * im) / np.maximum(self._count, 1.0)

    def crystal_map(self, rho: np.ndarray, name: str = "map", units: str = "e/Å³") -> CrystalMap:
        return CrystalMap.from_array(np.asarray(rho, dtype=np.float32), self.cell, self.spacegroup,
                                     name=name, units=units)

    def resolution_bins(self, per_bin: int = 500, n_bins: int | None = None,
                        select: np.ndarray | None = None) -> np.ndarray:
        """Equal-count resolution shells (0 = lowest resolution), about ``per_bin`` reflections each (1–20),
        counted over ``select`` when given; every reflection gets a shell."""
        inv = 1.0 / self.d ** 2
        ref = inv if select is None else inv[select]
        if n_bins is None:
            n_bins = int(np.clip(len(ref) // per_bin, 1, 20))
        edges = np.quantile(ref, np.linspace(0, 1, n_bins + 1)[1:-1]) if n_bins > 1 else np.array([])
        return np.searchsorted(edges, inv, side="right")

    def completed(self, d_min: float | None = None) -> "ReflectionSet":
        """This set followed by the reflections of the reciprocal ASU to ``d_min`` Å (default: this set's) that it
        lacks (|F| = σ = 0; gemmi's ``make_miller_array``, systematic absences left out).  The first
        ``len(self.hkl)`` reflections are this set's, in its order."""
        d = min(d_min or self.d_min, self.d_min)
        full = np.asarray(gemmi.make_miller_array(self.cell, self.spacegroup, d * (1.0 - 1e-6), 0.0, True),
                          dtype=np.int64).reshape(-1, 3)
        lacking = full[np.isnan(self.values_at(np.ones(len(self.hkl)), full).real)]
        zeros = np.zeros(len(lacking))
        return ReflectionSet(self.cell, self.spacegroup, np.concatenate([self.hkl, lacking]),
                             np.concatenate([self.fobs, zeros]), np.concatenate([self.sigf, zeros]))

    def values_at(self, f: np.ndarray, hkl: np.ndarray) -> np.ndarray:
        """ASU coefficients ``f`` read at any indices ``hkl`` (m, 3) of the same crystal, e.g. another
        program's ASU: the symmetry mate's value (conjugated for −h); NaN where there is none."""
        fp1 = self.expand(f)
        key = {int(k): i for i, k in enumerate(_pack(self._p1))}
        h = np.asarray(hkl, dtype=np.int64).reshape(-1, 3)
        neg = _half_key(h)
        hp = np.where(neg[:, None], -h, h)
        idx = np.array([key.get(int(k), -1) for k in _pack(hp)], dtype=np.int64)
        out = np.where(idx >= 0, fp1[np.maximum(idx, 0)], np.nan + 0j)
        return np.where(neg, np.conj(out), out)
