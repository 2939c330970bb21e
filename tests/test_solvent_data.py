"""Phasing-map simulation and training windows for the solvent U-net (datasets.phasing, solvent_windows)."""
from __future__ import annotations

import gemmi
import numpy as np
import pytest

from crysplugins.datasets.phasing import (fom_for_kappa, kappa_for_mean_error, phasing_map, prepare_source,
                                          simulate_phasing)
from crysplugins.datasets.solvent_windows import (WindowSampler, augment, dm_cycle_map, has_clash, local_rms_mask,
                                                pack_chain)
from crysplugins.interface import CrystalMap


def chain_structure(n: int = 40, seed: int = 0) -> gemmi.Structure:
    """A pretend protein chain: a random walk of CA atoms 3.8 Å apart with one side-chain carbon each."""
    rng = np.random.default_rng(seed)
    st = gemmi.Structure()
    model, chain = gemmi.Model("1"), gemmi.Chain("A")
    pos = np.zeros(3)
    for i in range(n):
        step = rng.normal(size=3)
        pos = pos + 3.8 * step / np.linalg.norm(step) * 0.6
        res = gemmi.Residue()
        res.name, res.seqid = "ALA", gemmi.SeqId(i + 1, " ")
        for name, el, off in (("CA", "C", 0.0), ("CB", "C", 1.5)):
            a = gemmi.Atom()
            a.name, a.element = name, gemmi.Element(el)
            a.pos = gemmi.Position(*(pos + off))
            a.occ, a.b_iso = 1.0, 20.0
            res.add_atom(a)
        chain.add_residue(res)
    model.add_chain(chain)
    st.add_model(model)
    st.setup_entities()
    return st


def test_von_mises_tables_are_consistent():
    k = kappa_for_mean_error(np.array([20.0, 50.0, 80.0]))
    assert np.all(np.diff(k) < 0)
    rng = np.random.default_rng(0)
    for kappa, target in zip(k, (20.0, 50.0, 80.0)):
        err = rng.vonmises(0.0, kappa, 200000)
        assert np.degrees(np.abs(err)).mean() == pytest.approx(target, abs=0.6)
        assert np.cos(err).mean() == pytest.approx(float(fom_for_kappa(kappa)), abs=0.01)


@pytest.fixture(scope="module")
def packed():
    return pack_chain(chain_structure(150), np.random.default_rng(3), spacegroup="P 21 21 21", solvent=0.5)


def test_packing_makes_a_clash_free_crystal(packed):
    assert packed is not None
    assert packed.spacegroup_hm.startswith("P 21 21 21")
    assert not has_clash(packed)
    squeezed = packed.clone()
    c = packed.cell
    squeezed.cell = gemmi.UnitCell(c.a * 0.3, c.b * 0.3, c.c * 0.3, 90, 90, 90)
    squeezed.setup_cell_images()
    assert has_clash(squeezed)


def test_phasing_map_errors_follow_the_request(packed):
    src = prepare_source(packed, 2.5)
    assert 0.2 < src.solvent_fraction < 0.9
    rng = np.random.default_rng(1)
    low, high = simulate_phasing(src, 30.0, rng), simulate_phasing(src, 75.0, rng)
    assert low.mean_phase_error == pytest.approx(30.0, abs=4.0)
    assert high.mean_phase_error == pytest.approx(75.0, abs=4.0)
    assert low.fom.mean() > high.fom.mean()
    # errors grow with resolution
    hi_res = src.inv_d2 > np.median(src.inv_d2)
    d = np.abs((high.phi - high.phi_true + 180) % 360 - 180)
    assert d[hi_res].mean() > d[~hi_res].mean() + 10
    # a better map correlates better with the true (error-free) map
    exact = simulate_phasing(src, 0.0, rng)
    exact.phi = exact.phi_true
    ref = phasing_map(src, exact).array.ravel()
    cc = [np.corrcoef(phasing_map(src, s).array.ravel(), ref)[0, 1] for s in (low, high)]
    assert cc[0] > cc[1] > 0.0


def test_windows_and_augmentation(packed):
    src = prepare_source(packed, 3.0)
    rng = np.random.default_rng(2)
    x, y = WindowSampler([src], rng, window=16, refresh=2).sample(3)
    assert x.shape == (3, 1, 16, 16, 16) and y.shape == (3, 16, 16, 16)
    assert set(np.unique(y)) <= {0, 1}
    a = np.arange(27).reshape(3, 3, 3)
    xa, ya = augment(a, a.copy(), np.random.default_rng(5))
    assert np.array_equal(xa, ya) and sorted(xa.ravel()) == list(range(27))


def test_loss_weights_mark_where_the_local_rms_mask_is_wrong(packed):
    src = prepare_source(packed, 3.0)
    plain = WindowSampler([src], np.random.default_rng(4), window=16)
    weighted = WindowSampler([src], np.random.default_rng(4), window=16, lv_wrong_weight=3.0)
    x0, y0 = plain.sample(3)
    x, y, w = weighted.sample_weighted(3)
    assert np.array_equal(x, x0) and np.array_equal(y, y0)  # the weights draw nothing from the generator
    assert set(np.unique(w)) <= {1.0, 4.0} and np.all(plain.sample_weighted(2)[2] == 1.0)
    arr, weights = weighted._map(0)  # the cached map of the windows above
    cmap = CrystalMap.from_array(arr, src.cell, src.spacegroup)  # the statistic ignores the map's offset and scale
    wrong = local_rms_mask(cmap, src.d_min, src.solvent_fraction) != (src.mask > 0)
    assert 0.0 < wrong.mean() < 0.5 and np.array_equal(weights > 1.0, wrong)
    a = np.random.default_rng(1).random((4, 4, 4))
    xa, ya = augment(a, np.stack([a, 2 * a], axis=-1), np.random.default_rng(6))  # labels and weights move together
    assert np.array_equal(ya[..., 0], xa) and np.array_equal(ya[..., 1], 2 * xa)


class TrueMaskProvider:
    """A mask provider that knows the true solvent mask and remembers the cycles it was asked at."""

    def __init__(self, src):
        self.src, self.cycles, self.maps = src, [], {}

    def __call__(self, req):
        self.cycles.append(req.cycle)
        self.maps[req.cycle] = req.map_on(self.src.shape).array.copy()
        return self.src.mask_map()


def test_dm_cycle_map_is_the_map_the_provider_is_shown_at_that_cycle(packed):
    src = prepare_source(packed, 3.0)
    sim = simulate_phasing(src, 60.0, np.random.default_rng(7))
    shown = TrueMaskProvider(src)
    got = dm_cycle_map(src, sim, 10, shown)
    assert got.array.shape == src.shape and shown.cycles == [0, 5]  # stopped when cycle 10 asked
    full = TrueMaskProvider(src)  # the same run, not stopped: the engine hands over the same map at cycle 10
    dm_cycle_map(src, sim, 25, full)
    assert full.cycles == [0, 5, 10, 15, 20] and np.allclose(full.maps[10], got.array)
    exact = simulate_phasing(src, 0.0, np.random.default_rng(7))
    exact.phi = exact.phi_true
    truth = phasing_map(src, exact).array.ravel()
    cc_start = np.corrcoef(phasing_map(src, sim).array.ravel(), truth)[0, 1]
    assert np.corrcoef(got.array.ravel(), truth)[0, 1] > cc_start + 0.05  # DM with the true mask improved the map
    with pytest.raises(ValueError, match="never asked"):  # the provider's weight is 0 from cycle 30 on
        dm_cycle_map(src, sim, 35, TrueMaskProvider(src))


def test_windows_from_density_modification_serve_dm_refresh_windows(packed):
    src = prepare_source(packed, 3.0)
    shown = TrueMaskProvider(src)
    sampler = WindowSampler([src], np.random.default_rng(2), window=16, dm_share=1.0, dm_cycles=(5,),
                            dm_provider=shown, dm_refresh=3)
    sampler.sample(3)
    assert shown.cycles == [0]  # one DM map, made once, for three windows
    sampler.sample(1)
    assert shown.cycles == [0, 0]
    with pytest.raises(ValueError, match="dm_provider"):
        WindowSampler([src], np.random.default_rng(2), dm_share=0.5)


def test_packing_draws_the_solvent_fraction_from_the_given_range():
    chain = chain_structure(150)
    cells = {}
    for s in (0.35, 0.65):
        st = pack_chain(chain, np.random.default_rng(3), spacegroup="P 21 21 21", solvent_range=(s, s))
        assert st is not None and not has_clash(st)
        cells[s] = st.cell.volume
    # Matthews: V_cell = Z·V_protein/(1 − solvent); the cell may only grow (by 5 % steps) to clear clashes
    v_prot = 4 * 1.23 * sum(a.element.weight for r in chain[0][0] for a in r)
    assert cells[0.65] >= v_prot / (1 - 0.65) * 0.999
    assert cells[0.35] < cells[0.65]
