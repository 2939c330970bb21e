"""Density modification of a predicted fragment map against observed amplitudes (paper 000, appendix E).

The in-process counterpart of the SHELXE density modification the paper runs on its predicted maps:
each cycle

1. computes a map ρ from the observed amplitudes |F_obs| and the current phases (F000 free);
2. scores every voxel as protein or solvent by its *local variance* (mean of ρ² minus squared mean in a
   sphere of radius ``radius`` Å, computed by FFT convolution), or takes an explicit mask (solvent = 1);
3. modifies the map: in the protein region negative density (below the solvent level) is truncated, the
   solvent is flattened to its mean (``mode="flatten"``) or flipped about it (``mode="flip"``,
   ρ_s − γ(ρ − ρ_s)); voxels with an intermediate score (a band of ``band`` of the cell volume around the
   protein/solvent threshold) get a weighted combination of both;
4. projects back to the observed amplitudes: φ ← phase of the FFT of the modified map (``hkl`` observed
   only; unobserved reflections stay zero).

Ordinary crystals (~40–60 % solvent, experimental phases with figures of merit) are density-modified by the
one engine of :mod:`crysplugins.crystal.dm` (``crysplugins density-modify``: σ_A weighting, phase
combination with the experimental HL coefficients); this module is the refiner of predicted fragment maps
in P1 cells, which come without figures of merit.

After a fixed number of cycles the result carries the final map (|F_obs|·exp(iφ) synthesis), the phases,
and a success score: the Pearson correlation (over reflections) of the modified map's amplitudes |F_mod|
with |F_obs|, the analogue of SHELXE's CC.  ``refined`` is ``score >= REFINED_CC`` (see that constant for
how the threshold was measured).  Solvent fraction: given, or from the sequence via the volume estimate
V_protein ≈ 1.23 Å³/Da × MW (:func:`solvent_fraction_from_sequence`), or from the mask.

numpy + gemmi only (no torch).  Maps in e/Å³ when F is in electrons, phases in degrees at the interface.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import gemmi
import numpy as np

from crysplugins.crystal.fourier import FourierGrid, fourier_grid, phase_shift, stol2, usable_reflections
from crysplugins.crystal.io import make_mtz
from crysplugins.crystal.masks import _cone_kernel_ft  # cone-weighted sphere, shared with the mask plugin
from crysplugins.crystal.matthews import PROTEIN_VOLUME_PER_DALTON
from crysplugins.crystal.origin import search_origin_hand
from crysplugins.errors import CrysError
from crysplugins.interface import CrystalMap, ObservedAmplitudes, Reflections, Sequence


#: Score (CC of |F_mod| with |F_obs|) at or above which a result is called "refined".  In the
#: high-solvent P1 fragment cells a wrong map also flattens into a fair amplitude match, so the threshold is
#: high and one-sided: in BENCHMARKS.md, classical section (72 charge-flipping runs, 2–15 residues,
#: 1.5–2.25 Å) every run scoring >= 0.99 had a phase error < 60° (33/33), but solved runs scored down to
#: 0.91 at 2.25 Å while failed ones reached 0.987 — below 0.99 the score does not decide.  It is *not*
#: SHELXE's 0.2 (the CC of a traced poly-Ala model).  Re-measure before use on ordinary (~50 % solvent)
#: crystals.
REFINED_CC = 0.99


@dataclass
class RefineResult:
    """Output of a refiner.

    ``map`` final map (F_obs·exp(iφ) synthesis, P1, whole cell); ``hkl`` (n, 3) and ``phases`` (degrees) and
    ``amplitudes`` (|F_obs|) of the observed reflections; ``fom`` per-reflection weight in [0, 1]
    (agreement of |F_mod| with |F_obs|); ``score`` the success score (CC, see :data:`REFINED_CC`);
    ``refined`` whether the score passes the threshold; ``history`` one dict per cycle (cycle, cc,
    phase_change in degrees, solvent_level); ``info`` settings used (solvent fraction, radius, seconds).
    """

    map: CrystalMap
    hkl: np.ndarray
    phases: np.ndarray
    amplitudes: np.ndarray
    fom: np.ndarray
    score: float
    refined: bool
    history: list[dict[str, float]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    def reflections(self, name: str = "refined") -> Reflections:
        """An MTZ (F, PHI, FOM; P1) of the observed amplitudes with the refined phases."""

        mtz = make_mtz(self.map.cell, gemmi.SpaceGroup("P 1"), self.hkl,
                       {"F": ("F", self.amplitudes), "PHI": ("P", self.phases), "FOM": ("W", self.fom)})
        return Reflections(mtz=mtz, columns={"F": "F", "PHI": "PHI", "FOM": "FOM"}, name=name)


#: Shift the refined phases back onto the starting origin only when that raises their F²-weighted
#: agreement with the start by more than this (measured on the test fragments: drifts of 0.2–0.4 Å at
#: 2.0 Å gained 0.012–0.033, while at 1.5 Å the estimated shifts (≤ 0.1 Å) gained ≤ 0.003 and shifting
#: made the as-placed error worse).
ORIGIN_MIN_GAIN = 0.005

# ----------------------------------------------------------------------------------- solvent content

def solvent_fraction_from_sequence(sequence: Sequence | str, cell: gemmi.UnitCell, n_copies: int = 1) -> float:
    """Solvent fraction of a P1 cell holding ``n_copies`` of ``sequence``: 1 − 1.23 Å³/Da × MW / V_cell."""
    seq = sequence if isinstance(sequence, Sequence) else Sequence(str(sequence))
    protein = PROTEIN_VOLUME_PER_DALTON * seq.weight() * n_copies
    frac = 1.0 - protein / float(cell.volume)
    if frac < 0.05:
        raise CrysError(f"A sequence of {len(seq)} residues ({seq.weight():.0f} Da) does not fit in a cell of "
                        f"{cell.volume:.0f} Å³.")
    return float(min(frac, 0.99))


#: the least solvent (fraction of the cell) the fragment predictors take.  Their fragments lie in mostly empty P1
#: cells (by 1.23 Å³/Da: data_build/frag2-15's 23,974 examples 0.45-0.98, 0.57 at the 0.1 percentile; the 480 of
#: the fragment benchmark set 0.60-0.95), where the transformer was trained, charge flipping and the solvent envelope
#: work and the solution score was calibrated.  A packed crystal is another problem: on the real peptide crystal 5E5Z
#: (LVHSSN, 1.66 Å, expanded to P1: 8 % solvent) every fragment-phasing candidate was wrong (72-78°) while its score
#: said 0.94, and patterson-density's map was wrong too (76°) (docs/lab-notes/real-peptide-5e5z.md).
MIN_FRAGMENT_SOLVENT = 0.40


def check_fragment_cell(cell: gemmi.UnitCell, sequence: Sequence | str | None, solvent_fraction: float | None,
                        predictor: str) -> None:
    """Refuse, in one sentence, a cell the fragment fills: solvent (given, else from the sequence) below
    ``MIN_FRAGMENT_SOLVENT``.  Nothing to check without either."""
    if solvent_fraction is None and sequence is None:
        return
    solvent = solvent_fraction if solvent_fraction is not None else solvent_fraction_from_sequence(sequence, cell)
    if solvent < MIN_FRAGMENT_SOLVENT:
        raise CrysError(f"This cell holds only {100 * solvent:.0f} % solvent, and {predictor} takes a fragment in a "
                        f"mostly empty P1 cell (at least {100 * MIN_FRAGMENT_SOLVENT:.0f} % solvent; its training and "
                        f"test fragments lie in cells of 45–98 %), so it cannot phase a packed crystal such as a "
                        f"peptide's own.")


# ----------------------------------------------------------------------------------- observed data

def observed_data(reflections: Reflections | tuple[gemmi.UnitCell, np.ndarray, np.ndarray],
                  messages: list[str] | None = None) -> tuple[gemmi.UnitCell, np.ndarray, np.ndarray]:
    """(cell, hkl (n,3), |F_obs| (n,)) from Reflections (other space groups expanded to P1) or a tuple.

    Reflections without an amplitude, and 000, are dropped.  Intensities are converted with sqrt(max(I,0)).
    :class:`ObservedAmplitudes` (P1, already parsed) are taken as they are.
    """
    if isinstance(reflections, ObservedAmplitudes):
        reflections = (reflections.cell, reflections.hkl, reflections.amplitudes)
    if isinstance(reflections, Reflections):
        mtz = reflections.mtz
        if mtz.spacegroup is not None and mtz.spacegroup.number != 1:
            if messages is not None:
                messages.append(f"The reflections are in {mtz.spacegroup.hm}; expanded to P 1.")
            mtz = _copy_mtz(mtz)
            mtz.expand_to_p1()
            mtz.ensure_asu()
            reflections = Reflections(mtz=mtz, columns=dict(reflections.columns), name=reflections.name)
        cell = reflections.cell
        hkl = reflections.miller_array().astype(np.int64)
        f = reflections.amplitudes()
    else:
        cell, hkl, f = reflections
        hkl = np.asarray(hkl, dtype=np.int64).reshape(-1, 3)
        f = np.asarray(f, dtype=np.float64)
    keep = usable_reflections(hkl, f)
    hkl, f = hkl[keep], f[keep]
    # merge Friedel mates / duplicates into one of each pair (l>0, or l=0 and h>0, or l=h=0 and k>0)
    flip = (hkl[:, 2] < 0) | ((hkl[:, 2] == 0) & (hkl[:, 0] < 0)) | ((hkl[:, 2] == 0) & (hkl[:, 0] == 0) & (hkl[:, 1] < 0))
    hkl = np.where(flip[:, None], -hkl, hkl)
    _, first = np.unique(hkl, axis=0, return_index=True)
    first = np.sort(first)
    if len(first) < 10:
        raise CrysError("The reflections hold fewer than 10 usable amplitudes.")
    return cell, hkl[first], f[first]


def _copy_mtz(mtz: gemmi.Mtz) -> gemmi.Mtz:
    """A copy of an MTZ (cell, space group, columns and data) that can be expanded without touching the input."""
    out = gemmi.Mtz(with_base=False)
    out.cell = mtz.cell
    out.spacegroup = mtz.spacegroup
    out.add_dataset("copy")
    for col in mtz.columns:
        out.add_column(col.label, col.type)
    out.set_data(np.array(mtz, copy=True))
    return out


# ----------------------------------------------------------------------------------- voxel scores

def local_variance(rho: np.ndarray, kernel_ft: np.ndarray) -> np.ndarray:
    """Local variance of ρ in the kernel's sphere: <ρ²> − <ρ>² (FFT convolution, periodic)."""
    s = rho.shape
    m1 = np.fft.irfftn(np.fft.rfftn(rho) * kernel_ft, s=s, axes=(0, 1, 2))
    m2 = np.fft.irfftn(np.fft.rfftn(rho * rho) * kernel_ft, s=s, axes=(0, 1, 2))
    return m2 - m1 * m1


def protein_weight(score: np.ndarray, solvent_fraction: float, band: float) -> np.ndarray:
    """Protein weight in [0, 1] per voxel from a score (high = protein) and the solvent fraction.

    Voxels ranked below the solvent-fraction quantile minus band/2 are solvent (0), above it plus band/2
    protein (1), and in between get a linear weight (intermediate voxels, appendix E).
    """
    flat = score.ravel()
    lo_q = max(solvent_fraction - band / 2, 0.0)
    hi_q = min(solvent_fraction + band / 2, 1.0)
    lo, hi = np.quantile(flat, [lo_q, hi_q])
    if hi <= lo:
        return (score > lo).astype(np.float64)
    return np.clip((score - lo) / (hi - lo), 0.0, 1.0)


# ----------------------------------------------------------------------------------- the refiner

def _resample_mask(mask: CrystalMap, shape: tuple[int, int, int]) -> np.ndarray:
    """Protein weight (1 − solvent mask) on ``shape`` by nearest-grid-point lookup in fractional coordinates."""
    arr = np.asarray(mask.array, dtype=np.float64)
    if arr.shape != tuple(shape):
        idx = [np.floor(np.arange(n) * m / n + 0.5).astype(int) % m for n, m in zip(shape, arr.shape)]
        arr = arr[np.ix_(*idx)]
    if arr.min() < -1e-6 or arr.max() > 1 + 1e-6:
        raise CrysError("The solvent mask must hold values between 0 (protein) and 1 (solvent).")
    return 1.0 - np.clip(arr, 0.0, 1.0)


def density_modify(cmap: CrystalMap | None,
                   reflections: Reflections | tuple[gemmi.UnitCell, np.ndarray, np.ndarray],
                   solvent_fraction: float | None = None,
                   mask: CrystalMap | None = None,
                   cycles: int = 200,
                   sequence: Sequence | str | None = None,
                   phases: np.ndarray | None = None,
                   mode: str = "flatten",
                   flip_gamma: float = 0.5,
                   radius: float | None = None,
                   band: float = 0.10,
                   mask_every: int = 1,
                   rate: float = 3.0,
                   keep_origin: bool = True,
                   progress: Callable[[float, str], None] | None = None,
                   messages: list[str] | None = None) -> RefineResult:
    """Density-modify a starting map (or starting ``phases`` in degrees) against observed amplitudes.

    ``cmap``: the starting map (any grid; its Fourier coefficients at the observed hkl give the starting
    phases); or ``phases`` aligned with the observed reflections.  ``reflections``: Reflections with F (or
    I), or (cell, hkl, |F|).  Solvent fraction: ``solvent_fraction``, else from ``sequence``, else from
    ``mask`` (CrystalMap, solvent = 1, fixed throughout).  ``radius`` (Å) of the local-variance sphere
    (default max(2.5, 1.6·d_min)); ``cycles`` fixed number of cycles.  In P1 nothing pins the origin, so
    the modified map can drift by a fraction of a voxel or more; with ``keep_origin`` (default) the final
    phases are shifted back onto the starting phases (best origin shift by
    :func:`crysplugins.crystal.origin.search_origin_hand`, hand kept), so the refined map stays where the
    starting map put it.  See the module docstring.

    Each cycle's map is the unweighted |F_obs|·exp(iφ_mod) synthesis (tuned on high-solvent P1 fragments).
    """
    t0 = time.monotonic()
    msgs: list[str] = messages if messages is not None else []
    cell, hkl, fobs = observed_data(reflections, msgs)
    _check_settings(mode, cycles)
    d_min = float((1.0 / np.sqrt(np.maximum(4.0 * stol2(cell, hkl), 1e-12))).min())
    fg = _grid_for(cmap, cell, hkl, d_min, rate)
    phi = _starting_phases(cmap, phases, fg, cell, hkl, fobs)
    fixed_w, solvent_fraction = _fixed_mask_and_fraction(mask, solvent_fraction, sequence, cell, fg.shape)
    if radius is None:
        radius = max(2.5, 1.6 * d_min)
    kernel = _cone_kernel_ft(cell, fg.shape, radius) if fixed_w is None else None
    phi_start = phi.copy()
    history: list[dict[str, float]] = []
    w_prot = fixed_w
    f_mod = fobs * np.exp(1j * phi)
    cc = float("nan")
    for cycle in range(cycles):
        rho = fg.to_map(fobs * np.exp(1j * phi))
        if fixed_w is None and (cycle % mask_every == 0 or w_prot is None):
            w_prot = protein_weight(local_variance(rho, kernel), solvent_fraction, band)
        modified, level = modify_map(rho, w_prot, mode, flip_gamma)
        f_mod, _ = fg.from_map(modified)
        new_phi = np.angle(f_mod)
        change = float(np.degrees(np.average(np.abs(np.angle(np.exp(1j * (new_phi - phi)))), weights=fobs)))
        phi = new_phi
        cc = _cc(np.abs(f_mod), fobs)
        history.append({"cycle": cycle + 1, "cc": cc, "phase_change": change, "solvent_level": level})
        if progress is not None and (cycle % 10 == 0 or cycle == cycles - 1):
            progress((cycle + 1) / cycles, f"density modification cycle {cycle + 1}/{cycles}, CC {cc:.3f}")
    shift = np.zeros(3)
    if keep_origin:
        phi, shift = _origin_kept(hkl, fobs, phi_start, phi)
    fom_out = _fom(np.abs(f_mod), fobs)
    rho = fg.to_map(fobs * np.exp(1j * phi))
    out_map = CrystalMap.from_array(rho.astype(np.float32), cell, gemmi.SpaceGroup("P 1"),
                                    name="refined", units="e/Å³")
    return RefineResult(map=out_map, hkl=hkl.astype(np.int32), phases=np.degrees(np.angle(np.exp(1j * phi))),
                        amplitudes=fobs,
                        fom=fom_out, score=cc, refined=bool(cc >= REFINED_CC), history=history,
                        info={"solvent_fraction": float(solvent_fraction), "radius": float(radius),
                              "cycles": int(cycles), "mode": mode, "grid": list(fg.shape),
                              "seconds": round(time.monotonic() - t0, 3), "messages": msgs,
                              "origin_shift_back": [round(float(x), 4) for x in shift],
                              "refined_threshold": REFINED_CC})


def _check_settings(mode: str, cycles: int) -> None:
    if mode not in ("flatten", "flip"):
        raise CrysError(f"The solvent mode must be 'flatten' or 'flip', not '{mode}'.")
    if cycles < 1:
        raise CrysError("The number of density-modification cycles must be at least 1.")


def _grid_for(cmap: CrystalMap | None, cell: gemmi.UnitCell, hkl: np.ndarray, d_min: float,
              rate: float) -> FourierGrid:
    """The starting map's grid when it holds every reflection, else one at d_min / ``rate``."""
    shape = None
    if cmap is not None and cmap.cell.approx(cell, 1e-2):
        shape = cmap.shape
        if np.any(2 * np.abs(hkl).max(axis=0) >= np.array(shape)):
            shape = None
    return fourier_grid(cell, hkl, shape=shape, d_min=d_min, rate=rate)


def _starting_phases(cmap: CrystalMap | None, phases: np.ndarray | None, fg: FourierGrid, cell: gemmi.UnitCell,
                     hkl: np.ndarray, fobs: np.ndarray) -> np.ndarray:
    """Starting phases (radians): the given ``phases`` (degrees), else those of the starting map."""
    if phases is not None:
        phi = np.deg2rad(np.asarray(phases, dtype=np.float64))
        if phi.shape != fobs.shape:
            raise CrysError("The starting phases do not match the reflections.")
        return phi
    if cmap is None:
        raise CrysError("Density modification needs a starting map or starting phases.")
    if not cmap.cell.approx(cell, 1e-2):
        raise CrysError("The map and the reflections have different unit cells.")
    src = fg if cmap.shape == fg.shape else FourierGrid(hkl, cmap.shape, float(cell.volume))
    f0, _ = src.from_map(np.asarray(cmap.array, dtype=np.float64))
    return np.angle(f0)


def _fixed_mask_and_fraction(mask: CrystalMap | None, solvent_fraction: float | None,
                             sequence: Sequence | str | None, cell: gemmi.UnitCell,
                             shape: tuple[int, int, int]) -> tuple[np.ndarray | None, float]:
    """(the protein weight of a given mask or None, the solvent fraction: given, else from the sequence,
    else from the mask)."""
    fixed_w = _resample_mask(mask, shape) if mask is not None else None
    if solvent_fraction is None and fixed_w is not None:
        solvent_fraction = float(1.0 - fixed_w.mean())
    if solvent_fraction is None and sequence is not None:
        solvent_fraction = solvent_fraction_from_sequence(sequence, cell)
    if solvent_fraction is None:
        raise CrysError("Density modification needs a solvent fraction, a sequence or a solvent mask.")
    if not 0.0 < solvent_fraction < 1.0:
        raise CrysError(f"The solvent fraction must be between 0 and 1, not {solvent_fraction}.")
    return fixed_w, solvent_fraction


def modify_map(rho: np.ndarray, w_prot: np.ndarray, mode: str, flip_gamma: float) -> tuple[np.ndarray, float]:
    """(the modified map, the solvent level): protein density truncated at the solvent level, solvent
    flattened to its mean or flipped about it by ``flip_gamma`` (Abrahams & Leslie 1996), blended by the
    protein weight ``w_prot`` (0 solvent .. 1 protein)."""
    ws = 1.0 - w_prot
    level = float((rho * ws).sum() / max(ws.sum(), 1e-12))
    protein = np.maximum(rho, level)
    solvent = level if mode == "flatten" else level - flip_gamma * (rho - level)
    return w_prot * protein + ws * solvent, level


def _origin_kept(hkl: np.ndarray, fobs: np.ndarray, phi_start: np.ndarray,
                 phi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Phases shifted back onto the starting phases' origin (best shift, hand kept) when the modified map
    drifted by more than noise; returns (phases, the fractional shift applied)."""
    back = search_origin_hand(hkl, fobs, np.degrees(phi_start), np.degrees(phi), allow_hand=False)
    w = fobs ** 2
    gain = back.score - float((w * np.cos(phi_start - phi)).sum() / w.sum())
    if gain <= ORIGIN_MIN_GAIN:  # noise in the estimate, not a real drift
        return phi, np.zeros(3)
    shift = (back.shift + 0.5) % 1.0 - 0.5  # the smallest equivalent shift
    return phi + phase_shift(hkl, shift), shift


def _cc(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 0 else 0.0


def _fom(fmod: np.ndarray, fobs: np.ndarray) -> np.ndarray:
    """A per-reflection agreement weight in [0, 1]: 1 − |ΔF|/(F_obs + F_mod) after scaling F_mod to F_obs."""
    scale = (fobs * fmod).sum() / max((fmod * fmod).sum(), 1e-12)
    fm = fmod * scale
    return np.clip(1.0 - np.abs(fobs - fm) / np.maximum(fobs + fm, 1e-12), 0.0, 1.0)


# ----------------------------------------------------------------------------------- plugin object

class DensityModificationRefiner:
    """The built-in refiner ``density-modification`` (registered through ``register_refiners``)."""

    name = "density-modification"
    summary = ("In-process density modification: negative-density truncation, solvent flattening/flipping "
               "by local variance, projection to the observed amplitudes (numpy + gemmi).")

    def refine(self, cmap: CrystalMap | None, reflections: Reflections, **options: Any) -> RefineResult:
        return density_modify(cmap, reflections, **options)
