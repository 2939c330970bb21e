"""Simulated experimental phasing maps (the input of the solvent U-net, Skubák 2024 section 2.1).

A :class:`PhasingSource` holds what does not change between draws for one crystal: Miller indices to
``d_min``, model structure factors (protein atoms + a flat bulk-solvent term), centric flags, the true
solvent mask on the Shannon-rate grid (spacing ``d_min / 2``) and, where real data exist, observed
amplitudes.  :func:`simulate_phasing` then draws what a SAD experiment would give:

* amplitudes: observed FP where given, else |F_model| with relative Gaussian noise growing with
  resolution (5 % at low resolution to ``amp_noise`` at d_min);
* phases: true phase + an error from a von Mises distribution whose concentration gives a mean absolute
  error rising linearly over resolution rank from ``mean - slope/2`` to ``mean + slope/2`` (degrees);
  centric reflections flip by 180° with probability (mean error)/180° and get FOM 1 - 2p;
* figure of merit m = I1(kappa)/I0(kappa), the expected cosine of the error, so the FOM is honest.

:func:`phasing_map` grids m |F| exp(i phi) (the "FB/PHIB" map of section 2.1) on the mask grid with
gemmi's FFT.  Units: Å, degrees; maps in e/Å³ times the FOM.

Structure factors use gemmi's ``DensityCalculatorX`` (X-ray form factors) and gemmi's FFTs; the bulk
solvent is k_sol exp(-B_sol s²/4) F_mask with k_sol = 0.35 e/Å³, B_sol = 46 Å² (a typical flat model).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import gemmi
import numpy as np

from crysplugins.crystal.dm.hl import hl_from_phase_fom
from crysplugins.crystal.dm.reflections import ReflectionSet
from crysplugins.crystal.io import make_mtz
from crysplugins.crystal.masks import true_mask
from crysplugins.crystal.phasing_input import shannon_grid_shape
from crysplugins.errors import CrysError
from crysplugins.interface import CrystalMap

K_SOL = 0.35   # e/Å³
B_SOL = 46.0   # Å²


@dataclass
class PhasingSource:
    """One crystal prepared for phasing-map simulation (see module docstring)."""

    name: str
    cell: gemmi.UnitCell
    spacegroup: gemmi.SpaceGroup
    d_min: float                   # Å
    hkl: np.ndarray                # (n, 3) int32, reciprocal ASU
    f_model: np.ndarray            # (n,) complex128, protein + bulk solvent, electrons
    centric: np.ndarray            # (n,) bool
    inv_d2: np.ndarray             # (n,) 1/d² in Å⁻²
    mask: np.ndarray               # (nu, nv, nw) uint8, solvent = 1
    f_obs: np.ndarray | None = None  # (n,) observed amplitudes (NaN where unmeasured) or None
    family: str = ""
    meta: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.mask.shape)  # type: ignore[return-value]

    @property
    def solvent_fraction(self) -> float:
        return float(self.mask.mean())

    def mask_map(self) -> CrystalMap:
        return CrystalMap.from_array(self.mask.astype(np.float32), self.cell, self.spacegroup,
                                     name=f"{self.name}-true-mask", units="solvent=1")


def _clean(structure: gemmi.Structure) -> gemmi.Structure:
    st = structure.clone()
    st.remove_hydrogens()
    st.remove_waters()
    st.remove_empty_chains()
    st.setup_entities()
    return st


def prepare_source(structure: gemmi.Structure, d_min: float, name: str = "", family: str = "",
                   f_obs_mtz: gemmi.Mtz | None = None, f_label: str = "FP",
                   shape: tuple[int, int, int] | None = None) -> PhasingSource:
    """Compute model structure factors and the true mask of ``structure`` in its own cell and space group.

    ``d_min`` in Å.  ``f_obs_mtz`` (optional) supplies observed amplitudes (column ``f_label``) matched by
    Miller index; reflections it lacks keep NaN (unmeasured).  ``shape`` overrides the Shannon grid.
    """
    st = _clean(structure)
    if not st.cell.is_crystal():
        raise CrysError(f"{name or st.name} has no crystal cell; phasing maps need a real cell.")
    sg = st.find_spacegroup()
    if sg is None:
        raise CrysError(f"{name or st.name} has no space group gemmi knows.")
    if shape is None:
        shape = shannon_grid_shape(st.cell, sg, d_min)
    mask = true_mask(st, shape=shape).array.astype(np.uint8)

    dc = gemmi.DensityCalculatorX()
    dc.d_min = d_min
    dc.rate = 1.5
    dc.set_refmac_compatible_blur(st[0])
    dc.set_grid_cell_and_spacegroup(st)
    dc.put_model_density_on_grid(st[0])
    asu = gemmi.transform_map_to_f_phi(dc.grid, half_l=True).prepare_asu_data(dmin=d_min, unblur=dc.blur)
    hkl = np.asarray(asu.miller_array, dtype=np.int32)
    f_prot = np.asarray(asu.value_array, dtype=np.complex128)
    keep = ~np.all(hkl == 0, axis=1)
    hkl, f_prot = hkl[keep], f_prot[keep]

    # bulk solvent: F_mask(h) = V/N * sum_x mask(x) exp(+2 pi i h.x) = V/N * conj(fftn(mask))[h]
    ft = np.fft.fftn(mask.astype(np.float64))
    nu, nv, nw = shape
    f_mask = np.conj(ft[hkl[:, 0] % nu, hkl[:, 1] % nv, hkl[:, 2] % nw]) * (st.cell.volume / mask.size)
    inv_d2 = np.asarray(st.cell.calculate_1_d2_array(hkl.astype(np.int32)), dtype=np.float64)
    f_model = f_prot + K_SOL * np.exp(-B_SOL * inv_d2 / 4.0) * f_mask

    centric = np.asarray(sg.operations().centric_flag_array(hkl), dtype=bool)
    f_obs = None
    if f_obs_mtz is not None:
        f_obs = _match_amplitudes(f_obs_mtz, f_label, hkl, sg)
    return PhasingSource(name=name or st.name, cell=st.cell, spacegroup=sg, d_min=float(d_min), hkl=hkl,
                         f_model=f_model, centric=centric, inv_d2=inv_d2, mask=mask, f_obs=f_obs, family=family)


def _match_amplitudes(mtz: gemmi.Mtz, label: str, hkl: np.ndarray, sg: gemmi.SpaceGroup) -> np.ndarray:
    col = mtz.column_with_label(label)
    if col is None:
        raise CrysError(f"The MTZ file has no column {label}.")
    m_hkl = np.asarray(mtz.make_miller_array(), dtype=np.int32)
    values = np.asarray(col.array, dtype=np.float64)
    asu = gemmi.ReciprocalAsu(sg)
    gops = sg.operations()
    m_hkl = np.array([asu.to_asu(tuple(int(x) for x in h), gops)[0] for h in m_hkl], dtype=np.int32)
    key = lambda a: (a[:, 0].astype(np.int64) * 1_000_003 + a[:, 1]) * 1_000_003 + a[:, 2]  # noqa: E731
    lookup = dict(zip(key(m_hkl).tolist(), values.tolist()))
    return np.array([lookup.get(k, np.nan) for k in key(hkl).tolist()], dtype=np.float64)


# ---------------------------------------------------------------------------------------- phase errors

_KAPPA = np.logspace(-4, 3.5, 600)
_PHI = np.linspace(0.0, np.pi, 4001)
_W = np.exp(_KAPPA[:, None] * (np.cos(_PHI)[None, :] - 1.0))
_MEAN_ERR = np.degrees((_W * _PHI).sum(1) / _W.sum(1))        # decreasing in kappa (90° -> ~0°)
_FOM = (_W * np.cos(_PHI)).sum(1) / _W.sum(1)                   # I1/I0, increasing in kappa


def kappa_for_mean_error(mean_error_deg: np.ndarray) -> np.ndarray:
    """Von Mises concentration whose mean absolute error is ``mean_error_deg`` (degrees, 0-90)."""
    e = np.clip(np.asarray(mean_error_deg, dtype=np.float64), _MEAN_ERR[-1], _MEAN_ERR[0])
    return np.interp(-e, -_MEAN_ERR, _KAPPA)


def fom_for_kappa(kappa: np.ndarray) -> np.ndarray:
    """Figure of merit <cos(error)> = I1(kappa)/I0(kappa) of a von Mises error."""
    return np.interp(np.asarray(kappa, dtype=np.float64), _KAPPA, _FOM)


@dataclass
class SimulatedPhasing:
    """One draw of experimental-like data for a :class:`PhasingSource`."""

    f_obs: np.ndarray        # amplitudes (NaN = unmeasured)
    sig_f: np.ndarray
    phi: np.ndarray          # degrees, with errors
    phi_true: np.ndarray     # degrees
    fom: np.ndarray
    mean_phase_error: float  # realised mean |error| over measured reflections, degrees

    def weighted_phase_error(self) -> float:
        """Amplitude-weighted mean |phase error| in degrees."""
        ok = np.isfinite(self.f_obs)
        d = np.abs((self.phi[ok] - self.phi_true[ok] + 180.0) % 360.0 - 180.0)
        return float((d * self.f_obs[ok]).sum() / self.f_obs[ok].sum())


def simulate_phasing(source: PhasingSource, mean_phase_error: float, rng: np.random.Generator,
                     slope: float = 30.0, amp_noise: float = 0.15) -> SimulatedPhasing:
    """Draw amplitudes and phases with resolution-dependent errors (degrees) for ``source``."""
    n = len(source.hkl)
    order = np.argsort(source.inv_d2, kind="stable")
    rank = np.empty(n)
    rank[order] = (np.arange(n) + 0.5) / n            # 0 = lowest resolution, 1 = highest
    target = np.clip(mean_phase_error + slope * (rank - 0.5), 2.0, 89.5)
    kappa = kappa_for_mean_error(target)
    fom = fom_for_kappa(kappa)
    err = rng.vonmises(0.0, kappa)
    c = source.centric
    if c.any():  # centric: phase right or 180° off, with the same mean |error|; FOM = <cos error>
        p_flip = target[c] / 180.0
        flip = rng.random(int(c.sum())) < p_flip
        err[c] = np.where(flip, np.pi, 0.0)
        fom[c] = 1.0 - 2.0 * p_flip
    phi_true = np.degrees(np.angle(source.f_model))
    phi = (phi_true + np.degrees(err)) % 360.0
    if source.f_obs is not None:
        f = source.f_obs.copy()
        sig = 0.05 * np.nan_to_num(f)
    else:
        rel = 0.05 + (amp_noise - 0.05) * rank
        f0 = np.abs(source.f_model)
        f = np.abs(f0 * (1.0 + rel * rng.standard_normal(n)))
        sig = rel * f0
    ok = np.isfinite(f)
    d = np.abs((phi[ok] - phi_true[ok] + 180.0) % 360.0 - 180.0)
    return SimulatedPhasing(f_obs=f, sig_f=sig, phi=phi, phi_true=phi_true, fom=fom,
                            mean_phase_error=float(d.mean()) if d.size else float("nan"))


def phasing_mtz(source: PhasingSource, sim: SimulatedPhasing) -> gemmi.Mtz:
    """An MTZ with FP, SIGFP, PHIB (phases with errors), FOM, FB (= FOM x FP) and PHIC (true phases)."""
    ok = np.isfinite(sim.f_obs)
    cols = {
        "FP": ("F", sim.f_obs[ok]), "SIGFP": ("Q", sim.sig_f[ok]), "PHIB": ("P", sim.phi[ok]),
        "FOM": ("W", sim.fom[ok]), "FB": ("F", (sim.fom * sim.f_obs)[ok]), "PHIC": ("P", sim.phi_true[ok]),
    }
    return make_mtz(source.cell, source.spacegroup, source.hkl[ok], cols, title=f"simulated phasing {source.name}")


def phasing_reflections(source: PhasingSource, sim: SimulatedPhasing) -> tuple[ReflectionSet, np.ndarray, np.ndarray]:
    """The draw as density modification takes it: (the measured reflections, their HL coefficients from the phases
    with errors and the FOMs, the mask of ``source``'s reflections that were measured)."""
    ok = np.isfinite(sim.f_obs) & (sim.f_obs > 0)
    refl = ReflectionSet(source.cell, source.spacegroup, source.hkl[ok], sim.f_obs[ok], sim.sig_f[ok])
    return refl, hl_from_phase_fom(np.radians(sim.phi[ok]), sim.fom[ok], refl.centric), ok


def phasing_map(source: PhasingSource, sim: SimulatedPhasing, weighted: bool = True) -> CrystalMap:
    """The FOM-weighted phasing map (m |F| exp(i phi)) on the source's Shannon grid."""
    mtz = phasing_mtz(source, sim)
    label = "FB" if weighted else "FP"
    grid = mtz.transform_f_phi_to_map(label, "PHIB", exact_size=list(source.shape))
    return CrystalMap(grid=grid, name=f"{source.name}-phasing", units="e/Å³ x FOM")


def normalise_map(arr: np.ndarray) -> np.ndarray:
    """The U-net input normalisation: zero mean, unit standard deviation over the whole cell."""
    a = np.asarray(arr, dtype=np.float32)
    sd = float(a.std())
    return (a - float(a.mean())) / (sd if sd > 0 else 1.0)
