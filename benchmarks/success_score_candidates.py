"""Candidate phase-free success scores for refined maps: the peak-list CC of direct methods.

Experiment code for ``benchmarks/bench_success_score.py``, not part of the package: neither score beat the
refiner's own amplitude CC (docs/lab-notes/recycling.md, "Refiner flag"), so the refiner keeps that one.

The density-modification score (CC of |F_mod| with |F_obs|) saturates in the 70–90 % solvent P1 cells of
the fragment datasets (0.976–0.999 for 90 % of the refined dipeptide maps), which made it a doubtful
success flag.
This module scores a map the way direct-methods programs rank trial solutions: the map is reduced to its
N highest peaks (N = the number of non-hydrogen atoms expected from the sequence), the peaks are treated
as equal carbon-like atoms, and the structure factors of that peak list are compared with the observed
amplitudes as normalised structure factors:

    CC = [Σw·Eo·Ec·Σw − Σw·Eo·Σw·Ec] / sqrt{[Σw·Eo²·Σw − (Σw·Eo)²]·[Σw·Ec²·Σw − (Σw·Ec)²]}

with w = 1 here (Fujinaga & Read, J. Appl. Cryst. 20 (1987) 517; the figure of merit SHELXD ranks its trials by, Schneider
& Sheldrick, Acta Cryst. D58 (2002) 1772, where it is quoted in %; here it is a fraction in [−1, 1]).
A map of wrong phases has peaks in the wrong places, and a list of wrongly placed atoms reproduces the
observed |E| poorly; on the refined dipeptide maps this score spans 0.54–0.85 (5th–95th percentile,
train rows) where the density-modification CC spans 0.976–0.999.
:func:`sayre_cc` is a peak-free atomicity score of the same kind (CC of |Eo| with the normalised
amplitudes of the squared map); it ranked best of the variants tried on the training rows.

Measured (``benchmarks/RESULTS_success_score.md``): both scores separate true from random phases
cleanly, but on refined network predictions of dipeptides (phase errors spread over 20–90°) they rank
"within 60°, either hand" no better than the refiner's amplitude CC does (test AUC 0.73–0.76 vs 0.76).

Everything here depends on |F| only: a map and its inverse through the cell centre (phases −φ, the
other hand of a Patterson-based solution) score the same, and so does any origin shift of the map.

E-values: E(h)² = |F(h)|² / <|F|²>_shell in thin resolution shells of equal reflection count (the
Wilson normalisation of direct methods, e.g. Giacovazzo, *Direct Phasing in Crystallography*, 1998, ch. 2),
applied alike to observed and calculated amplitudes.

Units: cells and distances in Å, angles in degrees, B in Å², maps in any units (only peak positions
and heights' order are used), amplitudes in electrons (any common scale).
"""
from __future__ import annotations

from typing import Iterable

import gemmi
import numpy as np

from crysplugins.crystal.fourier import FourierGrid, stol2
from crysplugins.crystal.standardise import monomers
from crysplugins.errors import CrysError


#: Thresholds measured on 2,000 training rows of the dipeptide recycling templates (``rc_initial``: the
#: initial model's predictions after 50 cycles of density modification; label "solved" = refined phases
#: within 60° of the true phases for either hand), by ``benchmarks/bench_success_score.py``; precision and
#: recall on train and test rows are in ``benchmarks/RESULTS_success_score.md``.  ``*_THRESHOLD`` = the best
#: F1 on train (high recall, flags most examples); ``*_PRECISE`` = the lowest threshold with precision
#: >= 0.8 on train.  Neither score ranks better than the refiner's own amplitude CC on these data (AUC
#: 0.75 vs 0.77 on train): see the results file before relying on them.
SAYRE_CC_THRESHOLD = 0.6656
SAYRE_CC_PRECISE = 0.8052
#: For :func:`peak_cc` with its default settings (E-map peaks, |E| CC, B 20 Å², 0.75 × expected atoms).
PEAK_CC_THRESHOLD = 0.6285
PEAK_CC_PRECISE = 0.7517

#: Default B (Å²) of the equal peak atoms, and the minimum separation of two peaks (Å).
PEAK_B = 20.0
MIN_PEAK_DISTANCE = 1.0
#: Peaks used = PEAK_FACTOR × expected atoms (at 1.5 Å bonded atoms merge, so fewer maxima than atoms).
PEAK_FACTOR = 0.75
#: Reflections per resolution shell for the E normalisation.
SHELL_SIZE = 200

_NEIGHBOURS = [(i, j, k) for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1) if (i, j, k) != (0, 0, 0)]


def expected_atoms(sequence: str | Iterable[str]) -> int:
    """Number of non-hydrogen atoms of a peptide fragment from its one-letter sequence.

    Per-residue counts are those of the ideal residues shipped with the package
    (``crysplugins/data/monomers.json``, Coot monomer library, heavy atoms without OXT), e.g. G 4, A 5,
    W 14; the dataset fragments are cut from chains and carry no OXT either.  Unknown letters raise
    :class:`CrysError`.
    """

    seq = "".join(sequence) if not isinstance(sequence, str) else sequence
    seq = "".join(seq.split()).upper()
    if not seq:
        raise CrysError("The sequence is empty, so the expected number of atoms is unknown.")
    counts = {k: len(v["atoms"]) for k, v in monomers().items()}
    bad = sorted(set(seq) - set(counts))
    if bad:
        raise CrysError(f"The sequence has residue letters without a known atom count: {''.join(bad)}.")
    return int(sum(counts[c] for c in seq))


def find_peaks(map_array: np.ndarray, cell: gemmi.UnitCell, n_peaks: int,
               min_distance: float = MIN_PEAK_DISTANCE) -> tuple[np.ndarray, np.ndarray]:
    """The ``n_peaks`` highest local maxima of a whole-cell P1 map, at least ``min_distance`` Å apart.

    Local maxima are voxels not lower than any of their 26 neighbours on the periodic grid; each is
    refined to sub-grid precision by a parabola through the voxel and its two neighbours along each
    axis (shift clipped to ±0.5 voxel).  Peaks are taken by decreasing height, skipping any closer than
    ``min_distance`` Å (minimum image) to one already taken.  Returns fractional coordinates (n, 3) and
    heights (n,) in the map's units; fewer than ``n_peaks`` rows when the map has fewer maxima.
    """
    rho = np.asarray(map_array, dtype=np.float64)
    if rho.ndim != 3 or min(rho.shape) < 3:
        raise CrysError("The map must be a 3-D grid with at least 3 points along each axis.")
    shape = np.array(rho.shape)
    is_max = np.ones(rho.shape, dtype=bool)
    for s in _NEIGHBOURS:
        is_max &= rho >= np.roll(rho, s, axis=(0, 1, 2))
    idx = np.argwhere(is_max)
    heights = rho[is_max]
    order = np.argsort(-heights, kind="stable")
    idx, heights = idx[order], heights[order]
    # sub-grid position: parabola through (-1, 0, +1) along each axis
    frac = idx.astype(np.float64)
    for axis in range(3):
        up = idx.copy()
        up[:, axis] = (up[:, axis] + 1) % shape[axis]
        dn = idx.copy()
        dn[:, axis] = (dn[:, axis] - 1) % shape[axis]
        fp = rho[tuple(up.T)]
        fm = rho[tuple(dn.T)]
        curv = fp - 2.0 * heights + fm
        with np.errstate(divide="ignore", invalid="ignore"):
            delta = np.where(curv < 0, 0.5 * (fm - fp) / curv, 0.0)
        frac[:, axis] += np.clip(delta, -0.5, 0.5)
    frac /= shape
    orth = np.array(cell.orth.mat.tolist())
    chosen: list[int] = []
    for i in range(len(frac)):
        if len(chosen) >= n_peaks:
            break
        if chosen:
            d = frac[chosen] - frac[i]
            d -= np.round(d)
            if np.min(np.einsum("ij,ij->i", d @ orth.T, d @ orth.T)) < min_distance ** 2:
                continue
        chosen.append(i)
    return frac[chosen] % 1.0, heights[chosen]


def equal_atom_f(hkl: np.ndarray, cell: gemmi.UnitCell, frac: np.ndarray, b_iso: float = PEAK_B,
                 element: str = "C") -> np.ndarray:
    """Complex F (electrons) of equal atoms at fractional positions ``frac`` (n, 3), by direct summation.

    F(h) = f(s)·exp(−B·s²/4)·Σ_j exp(2πi h·x_j), s = 1/d (gemmi's sign convention, see
    :mod:`crysplugins.crystal.fourier`); f is the IT92 form factor of ``element`` (gemmi).
    """

    hkl = np.asarray(hkl, dtype=np.float64).reshape(-1, 3)
    s2 = stol2(cell, hkl)  # (sin θ/λ)² = s²/4
    ff = gemmi.Element(element).it92
    a, b = np.asarray(ff.a, dtype=np.float64), np.asarray(ff.b, dtype=np.float64)
    f0 = (a[None, :] * np.exp(-b[None, :] * s2[:, None])).sum(axis=1) + float(ff.c)  # IT92 four-Gaussian fit
    f_atom = f0 * np.exp(-b_iso * s2)
    frac = np.asarray(frac, dtype=np.float64).reshape(-1, 3)
    if len(frac) == 0:
        return np.zeros(len(hkl), dtype=np.complex128)
    phase = 2.0 * np.pi * (hkl @ frac.T)
    return f_atom * np.exp(1j * phase).sum(axis=1)


def normalised_amplitudes(amplitudes: np.ndarray, s2: np.ndarray, shell_size: int = SHELL_SIZE) -> np.ndarray:
    """|E| = |F| / sqrt(<|F|²>) in shells of ``shell_size`` reflections sorted by ``s2`` = (sin θ/λ)² (Å⁻²)."""
    amp = np.asarray(amplitudes, dtype=np.float64)
    order = np.argsort(s2, kind="stable")
    n_shells = max(1, int(round(len(amp) / max(int(shell_size), 1))))
    e = np.empty_like(amp)
    for part in np.array_split(order, n_shells):
        mean2 = np.mean(amp[part] ** 2)
        e[part] = amp[part] / np.sqrt(mean2) if mean2 > 0 else 0.0
    return e


def _cc(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 0 else 0.0


def _map_phases(map_array: np.ndarray, cell: gemmi.UnitCell, hkl: np.ndarray):
    """(FourierGrid, phases in radians at ``hkl``) of a whole-cell map; CrysError when the grid is too coarse."""

    rho = np.asarray(map_array, dtype=np.float64)
    if rho.ndim != 3:
        raise CrysError("The map must be a 3-D grid covering the unit cell.")
    try:
        fg = FourierGrid(np.asarray(hkl), rho.shape, float(cell.volume))
    except ValueError as exc:
        raise CrysError(f"The map grid {rho.shape} is too coarse for the reflections' resolution.") from exc
    return fg, np.angle(fg.from_map(rho)[0])


def _check(hkl: np.ndarray, f_obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    hkl = np.asarray(hkl).reshape(-1, 3)
    f_obs = np.abs(np.asarray(f_obs, dtype=np.float64)).ravel()
    if len(hkl) != len(f_obs) or len(hkl) < 10:
        raise CrysError("The score needs at least 10 reflections and one amplitude per Miller index.")
    if not np.all(np.isfinite(f_obs)):
        raise CrysError("The observed amplitudes contain missing (NaN) values; drop those reflections first.")
    return hkl, f_obs


def peak_cc(map_array: np.ndarray, cell: gemmi.UnitCell, hkl: np.ndarray, f_obs: np.ndarray, n_atoms: int,
            b_iso: float = PEAK_B, min_distance: float = MIN_PEAK_DISTANCE, kind: str = "E",
            peak_factor: float = PEAK_FACTOR, emap: bool = True) -> float:
    """CC between observed and peak-list normalised structure factors of a whole-cell P1 map (see module doc).

    ``map_array`` (nu, nv, nw) covers the unit cell ``cell`` (Å, degrees); ``hkl`` (m, 3) and ``f_obs``
    (m,) are the observed reflections and amplitudes (one of each Friedel pair, no 000); ``n_atoms`` is
    the expected number of non-hydrogen atoms (:func:`expected_atoms`), of which
    ``round(peak_factor·n_atoms)`` highest peaks are used as equal carbon atoms with B = ``b_iso`` Å².
    With ``emap`` the peaks are searched in the E-map Σ|Eo|·exp(iφ_map) on the same grid (φ_map = the
    map's own phases; sharper peaks, as in direct methods; only the map's phases then matter),
    otherwise in the map as given.
    ``kind``: "E" = CC of |Eo| with |Ec| (SHELXD's form), "E2" = CC of Eo² with Ec², "F" = CC of |Fo|
    with |Fc| (no normalisation).  Returns a fraction in [−1, 1]; higher = more likely solved.
    The same for a map, its origin shifts and its inverse (other hand).
    """

    hkl, f_obs = _check(hkl, f_obs)
    if n_atoms < 1:
        raise CrysError("The expected number of atoms must be at least 1.")
    if kind not in ("E", "E2", "F"):
        raise CrysError(f"Unknown peak CC kind '{kind}' (use E, E2 or F).")
    s2 = stol2(cell, hkl)
    eo = normalised_amplitudes(f_obs, s2)
    rho = np.asarray(map_array, dtype=np.float64)
    if emap:
        fg, phi = _map_phases(rho, cell, hkl)
        rho = fg.to_map(eo * np.exp(1j * phi))
    n_peaks = max(1, int(round(peak_factor * n_atoms)))
    frac, _ = find_peaks(rho, cell, n_peaks, min_distance)
    f_calc = np.abs(equal_atom_f(hkl, cell, frac, b_iso))
    if kind == "F":
        return _cc(f_obs, f_calc)
    ec = normalised_amplitudes(f_calc, s2)
    if kind == "E2":
        return _cc(eo ** 2, ec ** 2)
    return _cc(eo, ec)


def sayre_cc(map_array: np.ndarray, cell: gemmi.UnitCell, hkl: np.ndarray, f_obs: np.ndarray) -> float:
    """CC of |Eo| with the normalised amplitudes of the squared map (an atomicity score, no peak list).

    The map is rebuilt from its own phases and the observed amplitudes, ρ' = (1/V) Σ |Fo|·exp(iφ_map),
    squared, and transformed back; for a map of equal resolved atoms ρ'² has the same structure factors
    up to a smooth shape factor (Sayre's equation, Acta Cryst. 5 (1952) 60), so after normalisation in
    resolution shells |E(ρ'²)| ≈ |Eo|.  Depends only on the map's phases, not on its hand or origin.
    """

    hkl, f_obs = _check(hkl, f_obs)
    fg, phi = _map_phases(map_array, cell, hkl)
    rho = fg.to_map(f_obs * np.exp(1j * phi))
    g = np.abs(fg.from_map(rho * rho)[0])
    s2 = stol2(cell, hkl)
    return _cc(normalised_amplitudes(f_obs, s2), normalised_amplitudes(g, s2))


def is_solved(score: float, threshold: float = SAYRE_CC_THRESHOLD) -> bool:
    """The recycling decision: ``score`` >= ``threshold`` (default: :func:`sayre_cc`'s best-F1 threshold;
    pass ``PEAK_CC_THRESHOLD`` for a :func:`peak_cc` score, ``*_PRECISE`` for fewer false "solved")."""
    return bool(score >= threshold)
