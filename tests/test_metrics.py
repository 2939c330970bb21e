"""Metrics (paper eq. 7, cphasematch-style phase errors) and the numpy Fourier conventions they rely on."""
from __future__ import annotations

from pathlib import Path

import gemmi
import numpy as np
import pytest

from crysplugins.crystal import fourier, metrics

DATA = Path(__file__).parent / "data"
import crysplugins_classical_fixtures as fx  # registered by conftest.py


@pytest.fixture(scope="module")
def frag5():
    return fx.structure_factors(DATA / "frag5.pdb", 1.5)


def test_fourier_matches_gemmi_conventions(frag5):
    st, hkl, f = frag5
    # gemmi's own map of the same coefficients, read back with our transform
    fg = fourier.fourier_grid(st.cell, hkl, d_min=1.5)
    rho = fg.to_map(f)
    f_back, f000 = fg.from_map(rho)
    np.testing.assert_allclose(f_back, f, atol=1e-6 * np.abs(f).max())
    assert abs(f000) < 1e-6 * np.abs(f).max()
    # gemmi density of the model on our grid, forward-transformed by us = gemmi's F (electrons)
    dc = gemmi.DensityCalculatorX()
    dc.d_min = 1.5
    dc.grid.set_unit_cell(st.cell)
    dc.grid.set_size(*fg.shape)
    dc.put_model_density_on_grid(st[0])
    ours, _ = fg.from_map(np.array(dc.grid, copy=False))
    sel = np.abs(f) > 0.05 * np.abs(f).max()
    dphi = metrics.phase_difference(np.angle(ours[sel], deg=True), np.angle(f[sel], deg=True))
    assert dphi.max() < 2.0
    assert np.allclose(np.abs(ours[sel]), np.abs(f[sel]), rtol=0.03)
    # resolution limit: every reflection gemmi returns is within d_min by our d, and the counts agree
    assert fourier.cell_d(st.cell, hkl).min() >= 1.5 - 1e-6
    assert len(fourier.p1_hkl(st.cell, 1.5)) == len(hkl)


def test_pearson_eq7():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(6, 7, 8))
    assert metrics.pearson(a, 2.5 * a + 3) == pytest.approx(1.0)
    assert metrics.pearson(a, -a) == pytest.approx(-1.0)
    b = rng.normal(size=a.shape)
    assert abs(metrics.pearson(a, b)) < 0.2
    # |FFT| Pearson is blind to a periodic shift, the plain Pearson is not
    shifted = np.roll(a, (2, 3, 1), axis=(0, 1, 2))
    assert metrics.fft_amplitude_pearson(a, shifted) == pytest.approx(1.0)
    assert metrics.pearson(a, shifted) < 0.3


def test_phase_error_weighted_and_wrapped():
    phi = np.array([10.0, 170.0, -170.0, 0.0])
    other = np.array([40.0, -170.0, 170.0, 90.0])  # differences 30, 20 (wrapped), 20, 90
    assert metrics.phase_error(None, phi, other) == pytest.approx(40.0)
    w = np.array([1.0, 0.0, 0.0, 1.0])
    assert metrics.phase_error(None, phi, other, w) == pytest.approx(60.0)


def test_shells_equal_count_and_localised_error(frag5):
    st, hkl, f = frag5
    phi = np.angle(f, deg=True)
    d = fourier.cell_d(st.cell, hkl)
    noisy = phi.copy()
    high = metrics.equal_count_shells(d, 12) == 11  # the highest-resolution twelfth
    noisy[high] += 90.0
    shells = metrics.phase_error_shells(hkl, st.cell, phi, noisy, np.abs(f))
    assert len(shells) == 12
    counts = [s["n"] for s in shells]
    assert max(counts) - min(counts) <= 1
    assert shells[0]["d_max"] > shells[-1]["d_max"]  # low resolution first
    assert all(s["phase_error"] < 1e-6 for s in shells[:-1])
    assert shells[-1]["phase_error"] > 80.0
    frac = metrics.fraction_solved_by_shell([shells, shells])
    assert [r["fraction_below"] for r in frac] == [1.0] * 11 + [0.0]
