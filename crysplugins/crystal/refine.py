"""Density modification of a map against observed amplitudes (issue #5 item 1; paper appendix E).

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

With ``weighting="sigmaa"`` (for ordinary crystals with ~40–60 % solvent, where the unweighted projection
walks away from good starting phases) each cycle instead

* builds the map from m·|F_obs|·exp(iφ) with the current figures of merit m (starting FOMs given, or read
  off a FOM-weighted starting map), leaving out a fixed free set of about ``FREE_ORBITS`` reflections
  (3–10 %, ``FREE_FRACTION``; whole symmetry-equivalent sets; cross-validation as in Cowtan & Main 1996,
  Acta Cryst. D52, 43–48);
* removes the bias of the modified map towards its input, F_ind = (F_mod − γ·F_in)/(1 − γ) ("gamma
  correction", Cowtan 1999, Acta Cryst. D55, 1555–1567; Abrahams 1997, Acta Cryst. D53, 371–376), with γ
  measured as the difference of the regression of F_mod on F_in between working and free reflections;
* estimates the figure of merit of the modified phases per resolution bin from their agreement with the
  starting phases on the free reflections (independent errors: <cos(φ_mod − φ_0)> = m_mod·m_0; times
  ``MODIFIED_FOM_SCALE`` = 0.8, because a mask made from the starting map makes that estimate high) and
  turns it into Read's (1986, Acta Cryst. A42, 140–149) σ_A weight X = 2σ_A|E_o||E_mod|/(1 − σ_A²) per
  reflection;
* combines the phase probabilities (Hendrickson & Lattman 1970, Acta Cryst. B26, 136–143, unimodal
  terms; Sim 1959): κ_0·exp(iφ_0) + X·exp(iφ_mod) (the latter a running mean over cycles, ``damping``),
  giving φ and m = I1(κ)/I0(κ) for the next map (the starting phases are never forgotten).

The result's phases are the combined phases, its ``fom`` the combined figures of merit, and its map the
FOM-weighted synthesis.  On the real 1RX2/1RX4 data (43–44 % solvent, U-net mask) it turned 41–42°
starting phase errors into 25–32° after 20 or 100 cycles (unweighted: 36–61°), and 61–62° into 51–56°
(unweighted: 59–75°); see BENCHMARKS.md, "The same with σ_A / FOM weighting and phase combination".
It needs starting figures of merit.

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
#: crystals.  Measured for ``weighting="none"`` only: with ``"sigmaa"`` the CC comes from a FOM-weighted map
#: without its free reflections, and this threshold has not been calibrated for it.
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



# ----------------------------------------------------------------------------------- phase probabilities

_KAPPA_TABLE = np.concatenate([[0.0], np.logspace(-3, 3, 700)])
_THETA = np.linspace(0.0, np.pi, 2001)
_VM = np.exp(_KAPPA_TABLE[:, None] * (np.cos(_THETA)[None, :] - 1.0))
_FOM_TABLE = (_VM * np.cos(_THETA)).sum(1) / _VM.sum(1)  # I1(κ)/I0(κ), increasing from 0 to ~1
del _VM

#: Bounds on the fraction of symmetry-unique reflections in the fixed free set that ``weighting="sigmaa"``
#: keeps out of every cycle's map (to measure the bias γ and the modified phases' FOM; a free set redrawn
#: each cycle leaked: reflections left out now were in earlier maps, and the estimate ran to 0.77 against a
#: realised 0.33 on 1RX4 at 65°).
FREE_FRACTION = (0.03, 0.10)
#: The free set is sized to hold about this many symmetry-unique reflections (measured on 1RX2/1RX4: 3–5 % free
#: gave lower final phase errors than 10–20 % at 45°, but too few free reflections gave noisy weights).
FREE_ORBITS = 1000
#: Free reflections (symmetry-unique) per resolution bin when estimating the modified phases' FOM.
FREE_PER_BIN = 250
#: Shrink factor on the free-set estimate of the modified phases' FOM.  A mask computed from the starting
#: map (a U-net or local-variance mask of it) carries the starting phase errors of the free reflections into
#: the modified map, so the estimate runs high: on 1RX2 at 65° it was 0.44 against a realised 0.36 in cycle 1,
#: and it crept up to 0.55 (realised 0.34) by cycle 60.  0.8 was chosen on the 1RX2/1RX4 benchmark itself
#: (final errors up to 4.7° lower in three of four runs, 0.1° higher in one; 0.6 was worse at 45°); on a
#: synthetic crystal with the true mask, where the estimate is honest, it cost ≤ 0.4°
#: (tests/test_refine_weighting.py crystal).
MODIFIED_FOM_SCALE = 0.8

#: Largest figure of merit a weight may reach (keeps κ finite).
MAX_FOM = 0.995


def fom_from_kappa(kappa: np.ndarray) -> np.ndarray:
    """Figure of merit m = <cos Δφ> = I1(κ)/I0(κ) of a von Mises phase distribution of concentration κ."""
    return np.interp(np.asarray(kappa, dtype=np.float64), _KAPPA_TABLE, _FOM_TABLE)


def kappa_from_fom(fom: np.ndarray) -> np.ndarray:
    """Concentration κ of the von Mises phase distribution whose figure of merit is ``fom`` (inverse of
    :func:`fom_from_kappa`; the Hendrickson–Lattman A, B of a unimodal phase are κ·cos φ, κ·sin φ)."""
    m = np.clip(np.asarray(fom, dtype=np.float64), 0.0, MAX_FOM)
    return np.interp(m, _FOM_TABLE, _KAPPA_TABLE)


def resolution_bins(stol2: np.ndarray, n_bins: int | None = None) -> np.ndarray:
    """Equal-count resolution bins (index 0 = lowest resolution) from sin²θ/λ² (Å⁻²); ``n_bins`` default
    ≈ one bin per 500 reflections, between 1 and 20."""
    n = len(stol2)
    if n_bins is None:
        n_bins = int(np.clip(n // 500, 1, 20))
    rank = np.empty(n, dtype=np.int64)
    rank[np.argsort(stol2, kind="stable")] = np.arange(n)
    return np.minimum(rank * n_bins // max(n, 1), n_bins - 1)


def _bin_mean(values: np.ndarray, bins: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Per-reflection value of the (weighted) mean of ``values`` in its bin."""
    nb = int(bins.max()) + 1
    w = np.ones_like(values) if weights is None else weights
    num = np.bincount(bins, weights=values * w, minlength=nb)
    den = np.bincount(bins, weights=w, minlength=nb)
    return (num / np.maximum(den, 1e-300))[bins]


def sigmaa_weights(fobs: np.ndarray, fcalc: np.ndarray, bins: np.ndarray, fom_bin: np.ndarray) -> np.ndarray:
    """Per-reflection phase concentration X of a calculated (here: modified-map) phase.

    Read (1986) for acentric reflections: P(φ) ∝ exp(X cos(φ − φ_c)) with X = 2σ_A|E_o||E_c|/(1 − σ_A²),
    |E| normalised to <|E|²> = 1 in each resolution bin.  σ_A of each bin is chosen so that the bin's mean
    figure of merit I1(X)/I0(X) equals ``fom_bin`` (per reflection, constant in a bin): the estimated mean
    cosine of the phase error of the calculated phases in that bin.
    """
    eo = fobs / np.sqrt(np.maximum(_bin_mean(fobs ** 2, bins), 1e-300))
    ec = np.abs(fcalc) / np.sqrt(np.maximum(_bin_mean(np.abs(fcalc) ** 2, bins), 1e-300))
    nb = int(bins.max()) + 1
    ee = eo * ec
    cnt = np.maximum(np.bincount(bins, minlength=nb), 1)
    target = np.bincount(bins, weights=fom_bin, minlength=nb) / cnt
    lo, hi = np.zeros(nb), np.full(nb, 0.98)
    for _ in range(12):  # bisection: the bin's mean FOM rises monotonically with σ_A
        mid = 0.5 * (lo + hi)
        sa = mid[bins]
        mean_m = np.bincount(bins, weights=fom_from_kappa(2.0 * sa * ee / (1.0 - sa ** 2)), minlength=nb) / cnt
        low = mean_m < target
        lo = np.where(low, mid, lo)
        hi = np.where(low, hi, mid)
    sa = (0.5 * (lo + hi))[bins]
    return 2.0 * sa * ee / (1.0 - sa ** 2)


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
                   weighting: str = "none",
                   fom: np.ndarray | str | None = None,
                   bias_gamma: float | None = None,
                   seed: int = 0,
                   damping: float = 0.8,
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

    ``weighting``: ``"none"`` (default; the map of each cycle is the unweighted |F_obs|·exp(iφ_mod)
    synthesis, as tuned on high-solvent P1 fragments) or ``"sigmaa"`` (FOM-weighted maps, bias-corrected
    modified phases combined with the starting phases; for ordinary ~40–60 % solvent crystals, see the
    module docstring).  ``fom``: starting figures of merit for ``"sigmaa"``: an array aligned with the
    reflections, or ``"map"`` when the starting map is an m·|F_obs|·exp(iφ) synthesis of these amplitudes
    (m = |F_map|/|F_obs|); required, because estimating them from the map alone proved unreliable.
    ``bias_gamma`` fixes the bias fraction γ instead of measuring it on the free set; ``seed`` draws the
    free set; ``damping`` ∈ [0, 1) is the weight of the previous cycles in the running mean of the
    modified-map phase term.
    """
    t0 = time.monotonic()
    msgs: list[str] = messages if messages is not None else []
    cell, hkl, fobs = observed_data(reflections, msgs)
    _check_settings(mode, cycles, weighting, damping, bias_gamma)
    d_min = float((1.0 / np.sqrt(np.maximum(4.0 * _stol2(cell, hkl), 1e-12))).min())
    fg = _grid_for(cmap, cell, hkl, d_min, rate)
    phi, cmap_f0 = _starting_phases(cmap, phases, fg, cell, hkl, fobs)
    fixed_w, solvent_fraction = _fixed_mask_and_fraction(mask, solvent_fraction, sequence, cell, fg.shape)
    if radius is None:
        radius = max(2.5, 1.6 * d_min)
    kernel = _cone_kernel_ft(cell, fg.shape, radius) if fixed_w is None else None
    phi_start = phi.copy()
    m0 = _starting_fom(fom, fobs, cmap_f0)
    sigmaa = None
    if weighting == "sigmaa":
        if m0 is None:
            raise CrysError("Weighting 'sigmaa' needs starting figures of merit (an array, or fom='map' for a "
                            "FOM-weighted starting map).")
        sg = reflections.mtz.spacegroup if isinstance(reflections, Reflections) else None
        sigmaa = _SigmaA.start(cell, hkl, fobs, phi_start, m0, sg, seed, damping, bias_gamma)
    history: list[dict[str, float]] = []
    w_prot = fixed_w
    f_mod = fobs * np.exp(1j * phi)
    cc = float("nan")
    for cycle in range(cycles):
        f_in = (sigmaa.m_cur if sigmaa else 1.0) * fobs * np.exp(1j * phi)
        # with sigma-A weighting the free set is left out of the map, so its F_mod has no self term
        rho = fg.to_map(np.where(sigmaa.free, 0.0, f_in) if sigmaa else f_in)
        if fixed_w is None and (cycle % mask_every == 0 or w_prot is None):
            w_prot = protein_weight(local_variance(rho, kernel), solvent_fraction, band)
        modified, level = modify_map(rho, w_prot, mode, flip_gamma)
        f_mod, _ = fg.from_map(modified)
        new_phi, entry = sigmaa.combine(f_mod, f_in) if sigmaa else (np.angle(f_mod), {})
        change = float(np.degrees(np.average(np.abs(np.angle(np.exp(1j * (new_phi - phi)))), weights=fobs)))
        phi = new_phi
        cc = _cc(np.abs(f_mod), fobs)
        history.append({"cycle": cycle + 1, "cc": cc, "phase_change": change, "solvent_level": level, **entry})
        if progress is not None and (cycle % 10 == 0 or cycle == cycles - 1):
            progress((cycle + 1) / cycles, f"density modification cycle {cycle + 1}/{cycles}, CC {cc:.3f}")
    shift = np.zeros(3)
    if keep_origin:
        phi, shift = _origin_kept(hkl, fobs, phi_start, phi)
    fom_out = sigmaa.m_cur if sigmaa else _fom(np.abs(f_mod), fobs)
    rho = fg.to_map((fom_out if sigmaa else 1.0) * fobs * np.exp(1j * phi))
    out_map = CrystalMap.from_array(rho.astype(np.float32), cell, gemmi.SpaceGroup("P 1"),
                                    name="refined", units="e/Å³")
    return RefineResult(map=out_map, hkl=hkl.astype(np.int32), phases=np.degrees(np.angle(np.exp(1j * phi))),
                        amplitudes=fobs,
                        fom=fom_out, score=cc, refined=bool(cc >= REFINED_CC), history=history,
                        info={"solvent_fraction": float(solvent_fraction), "radius": float(radius),
                              "cycles": int(cycles), "mode": mode, "weighting": weighting, "grid": list(fg.shape),
                              "seconds": round(time.monotonic() - t0, 3), "messages": msgs,
                              "origin_shift_back": [round(float(x), 4) for x in shift],
                              "refined_threshold": REFINED_CC})


def _check_settings(mode: str, cycles: int, weighting: str, damping: float, bias_gamma: float | None) -> None:
    if mode not in ("flatten", "flip"):
        raise CrysError(f"The solvent mode must be 'flatten' or 'flip', not '{mode}'.")
    if cycles < 1:
        raise CrysError("The number of density-modification cycles must be at least 1.")
    if weighting not in ("none", "sigmaa"):
        raise CrysError(f"The weighting must be 'none' or 'sigmaa', not '{weighting}'.")
    if not 0.0 <= damping < 1.0:
        raise CrysError(f"The damping must be at least 0 and below 1, not {damping}.")
    if bias_gamma is not None and not 0.0 <= bias_gamma < 1.0:
        raise CrysError(f"The bias fraction gamma must be at least 0 and below 1, not {bias_gamma}.")


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
                     hkl: np.ndarray, fobs: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """(starting phases in radians, the starting map's coefficients when the phases came from it)."""
    if phases is not None:
        phi = np.deg2rad(np.asarray(phases, dtype=np.float64))
        if phi.shape != fobs.shape:
            raise CrysError("The starting phases do not match the reflections.")
        return phi, None
    if cmap is None:
        raise CrysError("Density modification needs a starting map or starting phases.")
    if not cmap.cell.approx(cell, 1e-2):
        raise CrysError("The map and the reflections have different unit cells.")
    src = fg if cmap.shape == fg.shape else FourierGrid(hkl, cmap.shape, float(cell.volume))
    f0, _ = src.from_map(np.asarray(cmap.array, dtype=np.float64))
    return np.angle(f0), f0


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


@dataclass
class _SigmaA:
    """State of sigma-A weighted density modification (``weighting="sigmaa"``): the free set, the starting
    phase probabilities (κ0, φ0), the running modified-map term and the current figures of merit."""

    phi_start: np.ndarray
    fobs: np.ndarray
    m0: np.ndarray
    k0: np.ndarray
    bins: np.ndarray
    est_bins: np.ndarray
    free: np.ndarray
    damping: float
    bias_gamma: float | None
    m_cur: np.ndarray
    hl_prev: np.ndarray | None = None

    @classmethod
    def start(cls, cell: gemmi.UnitCell, hkl: np.ndarray, fobs: np.ndarray, phi_start: np.ndarray,
              m0: np.ndarray, spacegroup: gemmi.SpaceGroup | None, seed: int, damping: float,
              bias_gamma: float | None) -> "_SigmaA":
        """A free set of whole symmetry-equivalent sets (Cowtan & Main 1996) and resolution bins."""
        rng = np.random.default_rng(seed)
        _, orbit = np.unique(_orbit_keys(hkl, spacegroup), return_inverse=True)
        n_orbits = int(orbit.max()) + 1
        free_fraction = float(np.clip(FREE_ORBITS / n_orbits, *FREE_FRACTION))
        free = (rng.random(n_orbits) < free_fraction)[orbit]
        n_est = int(np.clip(free_fraction * n_orbits // FREE_PER_BIN, 1, 8))
        return cls(phi_start, fobs, m0, kappa_from_fom(m0), resolution_bins(_stol2(cell, hkl)),
                   resolution_bins(_stol2(cell, hkl), n_est), free, damping, bias_gamma, m0)

    def gamma(self, f_mod: np.ndarray, f_in: np.ndarray) -> float:
        """The bias fraction γ (Cowtan 1999 / Abrahams 1997): the modified map keeps a fraction γ of the
        input map unchanged, so F_mod = γ·F_in + new information; measured as work minus free agreement."""
        if self.bias_gamma is not None:
            return float(self.bias_gamma)
        work, free = ~self.free, self.free
        w2 = np.abs(f_in) ** 2
        cross = np.real(f_mod * np.conj(f_in))
        return float(cross[work].sum() / max(w2[work].sum(), 1e-300) - cross[free].sum() / max(w2[free].sum(), 1e-300))

    def combine(self, f_mod: np.ndarray, f_in: np.ndarray) -> tuple[np.ndarray, dict[str, float]]:
        """New phases (radians) from the starting phase probabilities and the bias-corrected modified
        phases, weighted by sigma-A; updates the figures of merit; returns (phases, trace entries)."""
        gamma = min(max(self.gamma(f_mod, f_in), 0.0), 0.9)
        f_ind = (f_mod - gamma * np.where(self.free, 0.0, f_in)) / (1.0 - gamma)
        phi_m = np.angle(f_ind)
        # figure of merit of the modified phases per bin from their agreement with the starting phases,
        # whose errors are independent of theirs (free reflections only):
        # <cos(φ_mod − φ_0)> = m_mod·m_0, shrunk by MODIFIED_FOM_SCALE (see there)
        wsel = self.fobs * self.free
        m0_bin = _bin_mean(self.m0, self.est_bins, wsel)
        agree = _bin_mean(np.cos(phi_m - self.phi_start), self.est_bins, wsel)
        m_mod = np.clip(MODIFIED_FOM_SCALE * agree / np.maximum(m0_bin, 1e-3), 0.0, MAX_FOM)
        hl_mod = sigmaa_weights(self.fobs, f_ind, self.bins, m_mod) * np.exp(1j * phi_m)
        if self.hl_prev is not None and self.damping > 0:  # running mean of the modified-map term
            hl_mod = (1.0 - self.damping) * hl_mod + self.damping * self.hl_prev
        self.hl_prev = hl_mod
        a = self.k0 * np.cos(self.phi_start) + hl_mod.real
        b = self.k0 * np.sin(self.phi_start) + hl_mod.imag
        self.m_cur = fom_from_kappa(np.hypot(a, b))
        return np.arctan2(b, a), {"gamma": gamma, "fom_modified": float(np.average(m_mod, weights=self.fobs)),
                                  "fom": float(np.average(self.m_cur, weights=self.fobs))}


def _orbit_keys(hkl: np.ndarray, spacegroup: gemmi.SpaceGroup | None) -> np.ndarray:
    """One integer per reflection, equal for reflections related by the space group's point-group rotations
    or by Friedel's law (so that a free set can leave out whole symmetry-equivalent sets)."""
    h = np.asarray(hkl, dtype=np.int64)
    rots = [np.eye(3, dtype=np.int64)]
    if spacegroup is not None:
        rots = [np.array(op.rot, dtype=np.int64) // op.DEN for op in spacegroup.operations().sym_ops]
    best = None
    for r in rots:
        for sign in (1, -1):
            g = sign * (h @ r)
            key = ((g[:, 0] + 512) * 1024 + (g[:, 1] + 512)) * 1024 + (g[:, 2] + 512)
            best = key if best is None else np.minimum(best, key)
    return best


def _starting_fom(fom: np.ndarray | str | None, fobs: np.ndarray, f0: np.ndarray | None) -> np.ndarray | None:
    """Starting figures of merit: an array aligned with the reflections, ``"map"`` (the starting map is an
    m·|F_obs|·exp(iφ) synthesis, so m = |F_map|/|F_obs|), or None (none given)."""
    if fom is None:
        return None
    if isinstance(fom, str):
        if fom != "map":
            raise CrysError(f"The starting figure of merit must be an array or 'map', not '{fom}'.")
        if f0 is None:
            raise CrysError("fom='map' needs a starting map.")
        m = np.abs(f0) / np.maximum(fobs, 1e-12)
        if np.median(m) > 0.95:
            raise CrysError("fom='map' reads the figures of merit off a FOM-weighted starting map, but this map's "
                            f"coefficients are {np.median(m):.2f} x |F_obs| (median): it is not FOM-weighted or "
                            "is on another scale; give the figures of merit explicitly.")
        return np.clip(m, 0.0, MAX_FOM)
    m = np.asarray(fom, dtype=np.float64)
    if m.shape != fobs.shape:
        raise CrysError("The starting figures of merit do not match the reflections.")
    if not np.all(np.isfinite(m)) or m.min() < 0 or m.max() > 1:
        raise CrysError("The starting figures of merit must lie between 0 and 1.")
    return np.clip(m, 0.0, MAX_FOM)


def _stol2(cell: gemmi.UnitCell, hkl: np.ndarray) -> np.ndarray:

    return stol2(cell, hkl)


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
