"""Sigma-A/FOM weighting with phase combination in density_modify (issue #6): a synthetic ~44 %-solvent crystal.

Random carbon atoms (B 15 Å²) fill a slab of 55 % of a 24 Å P1 cell; the solvent slab is given as the mask.
Starting phases carry von Mises errors with honest figures of merit.  At this solvent content plain
flattening with unweighted |F_obs| projection gains little (measured 46° -> 42.5° in 20 cycles), so the test
can fail in either direction: the weighted refiner must beat it clearly and report honest FOMs.
"""
from __future__ import annotations

import gemmi
import numpy as np
import pytest

from crysplugins.crystal import metrics, refine
from crysplugins.crystal.maps import crystallographic_f, fft_structure_factors
from crysplugins.errors import CrysError
from crysplugins.interface import CrystalMap


@pytest.fixture(scope="module")
def slab_crystal():
    rng = np.random.default_rng(0)
    a, prot, d_min, shape = 24.0, 0.55, 2.0, (32, 32, 32)
    cell = gemmi.UnitCell(a, a, a, 90, 90, 90)
    pos: list[np.ndarray] = []
    while len(pos) < int(prot * a ** 3 / 11.0):  # ~1 atom per 11 Å³ as in protein, >= 1.4 Å apart
        p = rng.random(3) * [a, a, a * prot]
        if not pos or np.min(np.linalg.norm(((np.array(pos[-200:]) - p) / a + 0.5) % 1 - 0.5, axis=1)) * a > 1.4:
            pos.append(p)
    fr = fft_structure_factors((np.array(pos), ["C"] * len(pos)), cell, shape, d_min, b_iso=15.0)
    hkl, fc = crystallographic_f(fr, cell, shape, d_min)
    z = (np.arange(shape[2]) + 0.5) / shape[2]
    solvent = np.broadcast_to((z > prot + 0.02)[None, None, :], shape).astype(np.float32)
    return cell, hkl, np.abs(fc), np.angle(fc, deg=True), CrystalMap.from_array(solvent, cell, "P 1")


def test_weighting_beats_unweighted_projection_at_low_solvent(slab_crystal):
    cell, hkl, f, phi, mask = slab_crystal
    kappa = np.full(len(f), 1.5)
    start = phi + np.degrees(np.random.default_rng(1).vonmises(0.0, kappa))
    fom = refine.fom_from_kappa(kappa)
    before = metrics.phase_error(hkl, phi, start, f)
    plain = refine.density_modify(None, (cell, hkl, f), phases=start, mask=mask, cycles=20)
    weighted = refine.density_modify(None, (cell, hkl, f), phases=start, mask=mask, cycles=20,
                                     weighting="sigmaa", fom=fom)
    err_plain = metrics.phase_error(hkl, phi, plain.phases, f)
    err_weighted = metrics.phase_error(hkl, phi, weighted.phases, f)
    assert 40.0 < before < 52.0
    assert err_weighted < before - 5.0          # measured 46.0 -> 37.8
    assert err_weighted < err_plain - 2.0        # measured 42.5 unweighted
    # the reported FOMs are honest: their mean matches the realised mean cosine of the phase error
    true_cos = float(np.average(np.cos(np.radians(weighted.phases - phi)), weights=f))
    assert abs(float(np.average(weighted.fom, weights=f)) - true_cos) < 0.1
    assert weighted.info["weighting"] == "sigmaa"
    assert 0.0 < weighted.history[-1]["gamma"] < 0.9


def test_fom_helpers_are_inverse():
    k = np.array([0.0, 0.5, 1.0, 3.0, 20.0])
    assert np.allclose(refine.kappa_from_fom(refine.fom_from_kappa(k)), k, rtol=1e-2, atol=1e-3)
    assert refine.fom_from_kappa(np.array([0.0]))[0] == pytest.approx(0.0, abs=1e-6)
    assert refine.fom_from_kappa(np.array([1.0]))[0] == pytest.approx(0.4464, abs=2e-3)  # I1(1)/I0(1)


def test_weighting_bad_input(slab_crystal):
    cell, hkl, f, phi, mask = slab_crystal
    with pytest.raises(CrysError, match="weighting"):
        refine.density_modify(None, (cell, hkl, f), phases=phi, mask=mask, cycles=1, weighting="magic")
    with pytest.raises(CrysError, match="figures of merit"):
        refine.density_modify(None, (cell, hkl, f), phases=phi, mask=mask, cycles=1, weighting="sigmaa",
                              fom=np.ones(3))
    with pytest.raises(CrysError, match="starting map"):
        refine.density_modify(None, (cell, hkl, f), phases=phi, mask=mask, cycles=1, weighting="sigmaa", fom="map")
    with pytest.raises(CrysError, match="needs starting figures of merit"):
        refine.density_modify(None, (cell, hkl, f), phases=phi, mask=mask, cycles=1, weighting="sigmaa")


def test_refine_command_weighting(slab_crystal, tmp_path):
    """``crysplugins refine --weighting sigmaa`` reads the starting FOMs off a FOM-weighted map."""
    import json

    from crysplugins.cli import main
    from crysplugins.crystal import io
    from crysplugins.crystal.fourier import fourier_grid

    cell, hkl, f, phi, mask = slab_crystal
    kappa = np.full(len(f), 1.5)
    start = phi + np.degrees(np.random.default_rng(1).vonmises(0.0, kappa))
    fom = refine.fom_from_kappa(kappa)
    fg = fourier_grid(cell, hkl, shape=mask.shape)
    io.write_map(CrystalMap.from_array(fg.to_map(fom * f * np.exp(1j * np.radians(start))), cell, "P 1"),
                 tmp_path / "fb.ccp4")
    io.write_map(mask, tmp_path / "mask.ccp4")
    io.write_mtz(io.make_mtz(cell, gemmi.SpaceGroup("P 1"), hkl, {"FP": ("F", f)}), tmp_path / "data.mtz")
    code = main(["refine", "--map", str(tmp_path / "fb.ccp4"), "--mtz", str(tmp_path / "data.mtz"),
                 "--mask", str(tmp_path / "mask.ccp4"), "--cycles", "20", "--weighting", "sigmaa",
                 "--out", str(tmp_path / "out")])
    assert code == 0
    assert json.loads((tmp_path / "out" / "refine.json").read_text())["info"]["weighting"] == "sigmaa"
    back = io.read_mtz(tmp_path / "out" / "refined.mtz", need=("F", "PHI"))
    err = metrics.phase_error(None, phi, back.values("PHI"), f)  # same reflection order as written
    assert err < metrics.phase_error(hkl, phi, start, f) - 5.0
