"""The amplitude-only solution score: its parts on a known dipeptide crystal and the shipped model."""
from __future__ import annotations

from pathlib import Path

import gemmi
import numpy as np
import pytest

from crysplugins.crystal import solution_score as ss
from crysplugins.crystal.charge_flipping import normalise_amplitudes
from crysplugins.crystal.fourier import fourier_grid, phase_shift

DATA = Path(__file__).parent / "data"
import crysplugins_classical_fixtures as fx  # registered by conftest.py


@pytest.fixture(scope="module")
def frag2():
    st, hkl, f = fx.structure_factors(DATA / "frag2.pdb", 1.5)
    seq = gemmi.one_letter_code([r.name for r in st[0][0]])
    amp = np.abs(f)
    return st.cell, hkl, amp, np.angle(f, deg=True), seq, normalise_amplitudes(st.cell, hkl, amp)


def test_roc_auc():
    assert ss.roc_auc(np.array([0.1, 0.2, 0.8, 0.9]), np.array([0, 0, 1, 1])) == 1.0
    assert ss.roc_auc(np.array([0.1, 0.2, 0.8, 0.9]), np.array([1, 1, 0, 0])) == 0.0
    assert ss.roc_auc(np.array([0.5, 0.5]), np.array([0, 1])) == 0.5
    assert np.isnan(ss.roc_auc(np.array([0.5, 0.6]), np.array([1, 1])))


def test_expected_atoms():
    assert ss.expected_atoms("GA") == 4 + 5 + 1  # N CA C O, + CB, + the terminal OXT
    assert ss.expected_atoms("W") == 14 + 1


def test_agreement_is_origin_and_hand_invariant(frag2):
    cell, hkl, f, phi, seq, e = frag2
    moved = -phi + np.rad2deg(phase_shift(hkl, np.array([0.31, 0.12, 0.77])))  # other hand, shifted
    assert ss.agreement(hkl, e, phi, moved) > 0.99
    rng = np.random.default_rng(1)
    assert ss.agreement(hkl, e, phi, rng.uniform(-180, 180, len(phi))) < 0.3
    best = ss.agreements(hkl, e, [phi, moved, rng.uniform(-180, 180, len(phi))])
    assert best[0] > 0.99 and best[1] > 0.99 and best[2] < 0.3


def test_map_features_prefer_the_true_map(frag2):
    cell, hkl, f, phi, seq, e = frag2
    n = ss.expected_atoms(seq)
    right = ss.map_features(cell, hkl, f, e, phi, n)
    wrong = ss.map_features(cell, hkl, f, e, np.random.default_rng(2).uniform(-180, 180, len(phi)), n)
    assert right["peak_cc"] > wrong["peak_cc"] + 0.1
    assert right["skewness"] > wrong["skewness"]
    rho = fourier_grid(cell, hkl).to_map(f * np.exp(1j * np.deg2rad(phi)))
    peaks = ss.local_maxima(rho)
    assert rho.reshape(-1)[peaks[0]] == rho.max()


def test_fit_logistic_separates_synthetic_classes():
    rng = np.random.default_rng(0)
    y = rng.random(400) < 0.5
    x = np.column_stack([y + 0.5 * rng.standard_normal(400), rng.standard_normal(400)])
    model = ss.fit_logistic(x, y.astype(float), ("a", "b"))
    p = np.array([model.probability({"a": a, "b": b}) for a, b in x])
    assert model.weights["a"] > 1.0 and abs(model.weights["b"]) < 0.5
    assert ss.roc_auc(p, y) > 0.9
    again = ss.SolutionScore.from_json(model.to_json())
    assert again.probability({"a": 1.0, "b": 0.0}) == pytest.approx(model.probability({"a": 1.0, "b": 0.0}))


def test_shipped_models_load_and_rank():
    models = ss.load_score()
    assert set(models.single.weights) == set(ss.SINGLE_FEATURES)
    assert set(models.among.weights) == set(ss.SET_FEATURES)
    base = {"dm_log": 2.0, "d_min": 2.0, "peak_cc": 0.25, "skewness": 4.5, "agreement": 0.6, "dm_gain": 0.0}
    better = dict(base, dm_log=3.0, agreement=0.99, dm_gain=0.5)
    assert 0.0 <= models.probability(base, 8) < models.probability(better, 8) <= 1.0
    assert models.probability(base, 1) == models.single.probability(base)
