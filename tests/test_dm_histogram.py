"""Histogram matching of the protein region (crysplugins.crystal.dm.histogram); its use in the engine is
tested in test_dm_engine.py."""
from __future__ import annotations

import numpy as np

from crysplugins.crystal.dm.histogram import REFERENCE_D, REFERENCE_Q, match_histogram, reference_quantiles


def _standardised_quantiles(v: np.ndarray, n: int) -> np.ndarray:
    return np.quantile((v - v.mean()) / v.std(), (np.arange(n) + 0.5) / n)


def test_match_maps_a_density_onto_the_reference_histogram():
    rng = np.random.default_rng(5)
    v = rng.normal(0.3, 0.7, 20000)  # a Gaussian "noisy map" region, e/Å³
    q = reference_quantiles(2.0)
    out = match_histogram(v, q)
    assert abs(out.mean() - v.mean()) < 1e-9 and abs(out.std() - v.std()) < 1e-9
    got = _standardised_quantiles(out, q.size)
    assert np.abs(got - (q - q.mean()) / q.std())[2:-2].max() < 0.02
    assert np.all(np.diff(out[np.argsort(v)]) >= -1e-12)  # ranks kept: matching only reshapes
    # the reference is skewed like protein density (long positive tail), the input was not
    skew = ((out - out.mean()) ** 3).mean() / out.std() ** 3
    assert skew > 0.3 and abs(((v - v.mean()) ** 3).mean() / v.std() ** 3) < 0.1


def test_match_weight_moves_part_of_the_way():
    v = np.random.default_rng(1).normal(size=5000)
    q = reference_quantiles(2.5)
    full = match_histogram(v, q, 1.0)
    assert np.allclose(match_histogram(v, q, 0.0), v)
    assert np.allclose(match_histogram(v, q, 0.5), 0.5 * (v + full))


def test_reference_table_is_standardised_and_interpolated():
    assert REFERENCE_Q.shape == (len(REFERENCE_D), REFERENCE_Q.shape[1])
    assert np.all(np.diff(REFERENCE_Q, axis=1) > 0)
    assert np.allclose(reference_quantiles(REFERENCE_D[2]), REFERENCE_Q[2])
    mid = reference_quantiles(0.5 * (REFERENCE_D[2] + REFERENCE_D[3]))
    assert np.allclose(mid, 0.5 * (REFERENCE_Q[2] + REFERENCE_Q[3]))
    assert np.allclose(reference_quantiles(0.3), REFERENCE_Q[0])  # clamped outside the table
