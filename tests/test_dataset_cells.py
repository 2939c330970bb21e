"""Unit cells for fragments (crysplugins.crystal.cells): contacts, centring, angle statistics, reindexing."""
from __future__ import annotations

from pathlib import Path

import gemmi
import numpy as np
import pytest
from scipy import stats

from crysplugins.crystal import cells
from crysplugins.crystal.standardise import read_structure_file
from crysplugins.datasets.fragments import windows

DATA = Path(__file__).parent / "data" / "dataset"


@pytest.fixture(scope="module")
def fragments():
    out = []
    for name in ("1EJG", "1RX2", "2PCB"):
        st = read_structure_file(DATA / f"{name}.pdb.gz")
        for n in (2, 5, 10):
            out += windows(st, name, n, n - 1)[:2]
    return out


def _brute_min_contact(pos: np.ndarray, cell: gemmi.UnitCell) -> float:
    """Independent check: all atom pairs against every translation in {-3..3}^3 except 0."""
    orth = np.array(cell.orth.mat.tolist())
    best = np.inf
    for i in range(-3, 4):
        for j in range(-3, 4):
            for k in range(-3, 4):
                if i == j == k == 0:
                    continue
                t = orth @ np.array([i, j, k], float)
                d = np.linalg.norm(pos[:, None, :] - (pos[None, :, :] + t), axis=2)
                best = min(best, d.min())
    return best


def _masses(frag) -> np.ndarray:
    return np.array([gemmi.Element(e).weight for e in frag.elements])


def test_no_intermolecular_contact_within_3_45(fragments):
    rng = np.random.default_rng(3)
    for frag in fragments:
        for bin_len in (None, 4.0):
            placed = cells.place(frag.positions, _masses(frag), rng, bin_len=bin_len)
            assert placed is not None
            d = _brute_min_contact(placed.positions, placed.cell)
            assert d > cells.MIN_CONTACT
            assert abs(d - placed.min_contact) < 1e-6 or placed.min_contact >= d - 1e-6


def test_clashing_fixed_cell_is_discarded(fragments):
    frag = max(fragments, key=lambda f: len(f.positions))
    assert cells.place(frag.positions, _masses(frag), fixed_cell=(8, 8, 8, 90, 90, 90)) is None
    ok = cells.place(frag.positions, _masses(frag), fixed_cell=(60, 60, 60, 90, 90, 90))
    assert ok is not None and ok.cell.a == 60


def test_centre_of_mass_within_one_voxel_of_cell_centre(fragments):
    from crysplugins.crystal.maps import fft_structure_factors, maps_from_f

    rng = np.random.default_rng(5)
    for frag in fragments[:6]:
        m = _masses(frag)
        placed = cells.place(frag.positions, m, rng, bin_len=4.0)
        cell = placed.cell
        shape = tuple(int(round(x / 0.5)) for x in (cell.a, cell.b, cell.c))
        frac = placed.positions @ np.array(cell.frac.mat.tolist()).T
        com = (frac * m[:, None]).sum(0) / m.sum()
        assert np.all(np.abs(com - 0.5) * np.array(shape) < 1.0)
        # and the density map's centre of mass (positive part) too
        f = fft_structure_factors((placed.positions, frag.elements), cell, shape, 1.5)
        rho, _ = maps_from_f(f, cell, shape)
        w = np.clip(rho, 0, None)
        idx = np.indices(shape).reshape(3, -1).T
        com_vox = (idx * w.reshape(-1, 1)).sum(0) / w.sum()
        assert np.all(np.abs(com_vox - np.array(shape) / 2) < 1.0), (com_vox, shape)


def test_angle_frequencies_match_1_3_1_3_2_9_1_9():
    rng = np.random.default_rng(11)
    draws = np.array([cells.draw_angles(rng) for _ in range(6000)]).ravel()
    counts = np.array([(draws == a).sum() for a in cells.ANGLES])
    expected = np.array([1 / 3, 1 / 3, 2 / 9, 1 / 9]) * draws.size
    assert counts.sum() == draws.size
    assert stats.chisquare(counts, expected).pvalue > 0.001
    # the test has power: a uniform choice of the four angles would be rejected
    uniform = rng.choice(cells.ANGLES, size=draws.size)
    ucounts = np.array([(uniform == a).sum() for a in cells.ANGLES])
    assert stats.chisquare(ucounts, expected).pvalue < 1e-6
    # alpha, beta, gamma are independent: contingency test of alpha vs gamma
    arr = draws.reshape(-1, 3)
    table = np.array([[((arr[:, 0] == a) & (arr[:, 2] == g)).sum() for g in cells.ANGLES] for a in cells.ANGLES])
    assert stats.chi2_contingency(table).pvalue > 0.001


def test_reindex_orders_axes_and_keeps_hand(fragments):
    rng = np.random.default_rng(2)
    frag = fragments[-1]

    def chirality(p):  # signed volume at the first CA (atoms N, CA, C, O, CB)
        return np.linalg.det(np.array([p[0] - p[1], p[2] - p[1], p[4] - p[1]]))

    for _ in range(20):
        placed = cells.place(frag.positions, _masses(frag), rng)
        c = placed.cell
        assert c.a <= c.b <= c.c
        assert np.sign(chirality(placed.positions)) == np.sign(chirality(frag.positions))
        d0 = np.linalg.norm(frag.positions[:, None] - frag.positions[None], axis=2)
        d1 = np.linalg.norm(placed.positions[:, None] - placed.positions[None], axis=2)
        assert np.abs(d0 - d1).max() < 1e-9
    # an odd permutation is handled: lengths given in descending order
    pos, lengths, angles = cells.reindex(frag.positions, [30, 20, 10], [100, 110, 120])
    assert list(lengths) == [10, 20, 30] and list(angles) == [120, 110, 100]
    assert np.sign(chirality(pos)) == np.sign(chirality(frag.positions))


def test_fast_contacts_agree_with_brute_force(fragments):
    rng = np.random.default_rng(9)
    for frag in fragments[:8]:
        lengths = frag.positions.max(0) - frag.positions.min(0) + rng.uniform(0, 4, 3)
        angles = cells.draw_angles(rng)
        _, dist = cells.contacts_by_translation(frag.positions, lengths, angles, reach=2)
        cell = gemmi.UnitCell(*lengths, *angles)
        assert abs(dist.min() - _brute_min_contact(frag.positions, cell)) < 1e-9
        # the numpy fallback used when scipy is not installed gives the same distances
        _, dist_np = cells.contacts_by_translation(frag.positions, lengths, angles, tree=cells._NO_SCIPY)
        assert np.allclose(dist_np, dist)
