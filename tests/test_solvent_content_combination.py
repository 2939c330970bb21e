"""Eq. 1 and eq. 2 of Skubák (2024) on hand-built distributions (crystal.solvent_content_combination)."""
from __future__ import annotations

import numpy as np
import pytest

from crysplugins.crystal.solvent_content_combination import (LogitCutoffDistribution, combine, conflation_centroid,
                                                              expected_solvent_content, logit_cutoff,
                                                              solvent_at_cutoff)
from crysplugins.errors import CrysError

# a "probability map" whose logits run evenly from -5 to 5: the cut-off l gives solvent S = (5 - l) / 10
LOGITS = np.linspace(-5, 5, 20001)
PROB = 1.0 / (1.0 + np.exp(-LOGITS))
EDGES = [-5.0, -4.0, -3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0]


def dist(probabilities):
    return LogitCutoffDistribution(tuple(EDGES), tuple(probabilities))


def test_eq1_and_cutoffs():
    assert expected_solvent_content(PROB) == pytest.approx(0.5, abs=1e-6)
    assert expected_solvent_content(np.full((4, 4, 4), 0.3)) == pytest.approx(0.3)
    assert logit_cutoff(PROB, 0.3) == pytest.approx(2.0, abs=1e-3)
    assert solvent_at_cutoff(PROB, 2.0) == pytest.approx(0.3, abs=1e-3)
    with pytest.raises(CrysError):
        logit_cutoff(PROB, 1.0)


def test_pu_of_solvent_reads_the_right_bin():
    p = [0.0] * 10
    p[5] = 0.6   # cut-offs in [0, 1) <-> S in (0.4, 0.5]
    p[3] = 0.4   # cut-offs in [-2, -1) <-> S in (0.6, 0.7]
    d = dist(p)
    vals = d.of_solvent(PROB, np.array([0.45, 0.65, 0.2, 0.0, 1.0]), interpolate=False)
    np.testing.assert_allclose(vals, [0.6, 0.4, 0.0, 0.0, 0.0])


def test_histogram_from_cutoffs():
    d = LogitCutoffDistribution.from_cutoffs([0.5, 0.7, -1.5, 9.0], EDGES)
    assert sum(d.probabilities) == pytest.approx(1.0)
    assert d.probabilities[5] == pytest.approx(0.5) and d.probabilities[3] == pytest.approx(0.25)
    assert d.probabilities[-1] == pytest.approx(0.25)   # 9.0 clipped into the last bin
    assert LogitCutoffDistribution.from_card(d.to_card()).probabilities == pytest.approx(d.probabilities)
    with pytest.raises(CrysError):
        LogitCutoffDistribution((0.0, 1.0), (0.5, 0.5))


MATTHEWS_S = [0.25, 0.5, 0.75]
MATTHEWS_P = [0.1, 0.8, 0.1]


def test_eq2_matthews_branch():
    p = [0.0] * 10
    p[5] = 0.5                          # P_U(0.45..0.5) = 0.5 -> product at S = 0.5: 0.8 * 0.5 = 0.4
    d = dist(p)
    r = combine(MATTHEWS_S, MATTHEWS_P, lambda s: d.of_solvent(PROB, s, interpolate=False), expected=0.47)
    assert r.branch == "matthews" and r.solvent_fraction == 0.5 and r.j_max == 1
    assert r.max_product == pytest.approx(0.4)


def test_eq2_conflation_branch_gives_the_centroid():
    p = [0.0] * 10
    p[5] = 0.1                          # product 0.08: between 0.005 and 0.25
    p[4] = 0.9                          # S in (0.5, 0.6]: P_U mass just above the Matthews peak
    d = dist(p)
    pu = lambda s: d.of_solvent(PROB, s, interpolate=False)  # noqa: E731
    r = combine(MATTHEWS_S, MATTHEWS_P, pu, expected=0.55)
    assert r.branch == "conflation"
    # independent centroid on a finer grid: P_M piecewise linear through (0,0), candidates, (1,0)
    s = np.linspace(0, 1, 200001)
    pm = np.interp(s, [0.0] + MATTHEWS_S + [1.0], [0.0] + MATTHEWS_P + [0.0])
    f = pm * pu(s)
    assert r.solvent_fraction == pytest.approx((s * f).sum() / f.sum(), abs=2e-3)
    assert 0.4 < r.solvent_fraction < 0.6 and r.solvent_fraction != 0.5


def test_eq2_unet_branch_when_inconsistent():
    p = [0.0] * 10
    p[1] = 1.0                          # U-net says S in (0.8, 0.9]: nowhere near Matthews
    d = dist(p)
    r = combine(MATTHEWS_S, MATTHEWS_P, lambda s: d.of_solvent(PROB, s, interpolate=False), expected=0.83)
    assert r.branch == "unet" and r.solvent_fraction == 0.83 and r.max_product == 0.0


def test_eq2_threshold_edges():
    const = lambda value: (lambda s: np.full(np.shape(s), value))  # noqa: E731
    assert combine([0.5], [1.0], const(0.25), expected=0.3).branch == "matthews"      # >= 0.25
    assert combine([0.5], [1.0], const(0.2499), expected=0.3).branch == "conflation"
    assert combine([0.5], [1.0], const(0.005), expected=0.3).branch == "unet"         # <= 0.005
    assert combine([0.5], [1.0], const(0.0051), expected=0.3).branch == "conflation"
    # a flat P_U: the centroid of the triangle P_M through (0,0), (0.5,1), (1,0) is 0.5
    assert conflation_centroid([0.5], [1.0], const(1.0)) == pytest.approx(0.5, abs=1e-6)
    with pytest.raises(CrysError):
        combine([], [], const(1.0), expected=0.3)


def test_interpolated_pu_has_no_step_at_bin_edges():
    p = [0.0] * 10
    p[5], p[6] = 0.6, 0.2
    d = dist(p)
    centres = 0.5 * (np.asarray(d.edges[:-1]) + np.asarray(d.edges[1:]))
    np.testing.assert_allclose(d.of_cutoff_interpolated(centres[[4, 5, 6, 7]]), [0.0, 0.6, 0.2, 0.0])
    edge = d.edges[6]                       # between the 0.6 and 0.2 bins: the step reads one or the other
    assert d.of_cutoff_interpolated(edge) == pytest.approx(0.4)
    assert d.of_cutoff(edge - 1e-9) == 0.6 and d.of_cutoff(edge + 1e-9) == 0.2
    assert d.of_cutoff_interpolated(d.edges[0] - 1.0) == 0.0
