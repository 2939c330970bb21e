"""True solvent masks, the local-variance mask and mask scores (crysplugins.crystal.masks)."""
from __future__ import annotations

import gemmi
import numpy as np
import pytest

from crysplugins.crystal.masks import (local_variance_mask, local_variance_radius, mask_scores, threshold_fraction,
                                       true_mask)
from crysplugins.errors import CrysError
from crysplugins.interface import CrystalMap
from crysplugins_test_support import blob_structure


def is_symmetric(cmap: CrystalMap) -> bool:
    g = cmap.grid.clone()
    g.symmetrize_avg()
    return np.array_equal(np.array(g, copy=False), cmap.array)


def test_true_mask_covers_symmetry_mates():
    st = blob_structure()
    m = true_mask(st, spacing=0.8)
    p1 = st.clone()
    p1.spacegroup_hm = "P 1"
    m1 = true_mask(p1, shape=m.shape)
    protein = 1 - m.solvent_fraction if hasattr(m, "solvent_fraction") else 1 - m.array.mean()
    protein_p1 = 1 - m1.array.mean()
    assert set(np.unique(m.array)) <= {0.0, 1.0}
    assert protein == pytest.approx(4 * protein_p1, rel=0.05)  # four copies in P 21 21 21, no overlap
    assert is_symmetric(m)
    assert not is_symmetric(m1.__class__.from_array(m1.array, st.cell, "P 21 21 21"))


def test_true_mask_needs_a_cell():
    st = blob_structure()
    st.cell = gemmi.UnitCell(1, 1, 1, 90, 90, 90)
    st.cell = gemmi.UnitCell()
    with pytest.raises(CrysError):
        true_mask(st, spacing=1.0)


def test_islands_removed():
    # a hollow shell of atoms encloses a small cavity: island removal turns it into protein
    st = gemmi.Structure()
    st.cell = gemmi.UnitCell(40, 40, 40, 90, 90, 90)
    st.spacegroup_hm = "P 1"
    model, chain = gemmi.Model("1"), gemmi.Chain("A")
    k = 0
    for th in np.linspace(0, np.pi, 14):
        for ph in np.linspace(0, 2 * np.pi, 28, endpoint=False):
            res = gemmi.Residue(); res.name, res.seqid = "GLY", gemmi.SeqId(k + 1, " "); k += 1
            a = gemmi.Atom(); a.name, a.element = "CA", gemmi.Element("C")
            a.pos = gemmi.Position(20 + 4.5 * np.sin(th) * np.cos(ph), 20 + 4.5 * np.sin(th) * np.sin(ph),
                                   20 + 4.5 * np.cos(th))
            a.occ = 1.0
            res.add_atom(a); chain.add_residue(res)
    model.add_chain(chain); st.add_model(model); st.setup_entities()
    kept = true_mask(st, spacing=0.5, island_min_volume=0.0)
    removed = true_mask(st, spacing=0.5, island_min_volume=200.0)
    centre = tuple(int(s / 2) for s in kept.shape)
    assert kept.array[centre] == 1.0 and removed.array[centre] == 0.0
    assert removed.array.mean() < kept.array.mean()


def test_threshold_fraction_keeps_ties_together():
    score = np.array([[[0.1, 0.5, 0.5, 0.9]]])
    assert threshold_fraction(score, 0.25).sum() == 1
    assert threshold_fraction(score, 0.5).tolist() == [[[0, 1, 1, 1]]]  # the tie at 0.5 stays together
    with pytest.raises(CrysError):
        threshold_fraction(score, 1.5)


def test_local_variance_mask_finds_the_flat_solvent():
    from crysplugins.datasets.phasing import phasing_map, prepare_source, simulate_phasing

    st = blob_structure(sg="P 21 21 21")
    src = prepare_source(st, 2.0)
    truth = src.mask_map()
    rho = phasing_map(src, simulate_phasing(src, 10.0, np.random.default_rng(0)))
    score, mask = local_variance_mask(rho, float(truth.array.mean()), d_min=2.0, fom=1.0)
    s = mask_scores(mask, truth)
    assert s.accuracy > 0.85
    assert is_symmetric(mask)
    assert local_variance_radius(2.0, 1.0) == 3.0 and local_variance_radius(3.0, 0.2) == 6.0


def test_mask_scores_by_hand():
    truth = np.array([1, 1, 1, 1, 0, 0, 0, 0], dtype=float).reshape(2, 2, 2)
    pred = np.array([1, 1, 1, 0, 1, 0, 0, 0], dtype=float).reshape(2, 2, 2)
    s = mask_scores(pred, truth)
    assert (s.accuracy, s.precision, s.recall, s.specificity) == (0.75, 0.75, 0.75, 0.75)
    assert s.f1 == pytest.approx(0.75)
    with pytest.raises(CrysError):
        mask_scores(pred, truth[:1])
