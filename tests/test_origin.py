"""Origin/hand search for origin-arbitrary P1 solutions (issue #9)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from crysplugins.crystal import fourier, metrics, origin

DATA = Path(__file__).parent / "data"
import crysplugins_classical_fixtures as fx  # registered by conftest.py


@pytest.fixture(scope="module")
def data():
    st, hkl, f = fx.structure_factors(DATA / "frag5.pdb", 1.5)
    return st, hkl, np.abs(f), np.angle(f, deg=True)


@pytest.mark.parametrize("inverted", [False, True])
def test_shifted_inverted_copy_gives_zero(data, inverted):
    st, hkl, f, phi = data
    t = np.array([0.3137, 0.7421, 0.0589])  # off-grid shift
    sign = -1.0 if inverted else 1.0
    moved = sign * phi + np.degrees(fourier.phase_shift(hkl, t))
    assert metrics.phase_error(hkl, phi, moved, f) > 60  # as placed it looks wrong
    res = origin.search_origin_hand(hkl, f, phi, moved)
    assert res.phase_error < 1e-3
    assert res.inverted is inverted
    assert res.score == pytest.approx(1.0, abs=1e-6)


def test_known_noise_is_recovered(data):
    st, hkl, f, phi = data
    rng = np.random.default_rng(3)
    noisy = phi + rng.normal(0.0, 35.0, len(phi))
    true_err = metrics.phase_error(hkl, phi, noisy, f)
    moved = -noisy + np.degrees(fourier.phase_shift(hkl, [0.61, 0.13, 0.87]))
    res = origin.search_origin_hand(hkl, f, phi, moved)
    assert res.inverted
    assert res.phase_error == pytest.approx(true_err, abs=1.5)
    assert np.allclose(res.shift, [0.61, 0.13, 0.87], atol=0.005)  # the right origin, to sub-grid precision


def test_random_phases_stay_wrong(data):
    st, hkl, f, phi = data
    rng = np.random.default_rng(5)
    res = origin.search_origin_hand(hkl, f, phi, rng.uniform(-180, 180, len(phi)))
    assert res.phase_error > 70.0


def test_apply_to_map(data):
    st, hkl, f, phi = data
    fg = fourier.fourier_grid(st.cell, hkl, d_min=1.5)
    true_map = fg.to_map(f * np.exp(1j * np.deg2rad(phi)))
    moved = -phi + np.degrees(fourier.phase_shift(hkl, [0.2, 0.45, 0.9]))
    moved_map = fg.to_map(f * np.exp(1j * np.deg2rad(moved)))
    res = origin.search_origin_hand(hkl, f, phi, moved)
    aligned = origin.apply_origin_hand(moved_map, res.shift, res.inverted)
    assert metrics.pearson(true_map, moved_map) < 0.5
    assert metrics.pearson(true_map, aligned) > 0.9999
