"""The atom-fit hand (``fragment_hand_atoms``, a ``hand-atoms`` card): atoms fitted to a map's coefficients
(crystal/atom_fit.py), the sequence's covalent graph matched onto them and the Cα vote (crystal/covalent_match.py),
the card's gate and fallback, and its use by fragment-phasing and patterson-density on the shipped example."""
from __future__ import annotations

import json
from pathlib import Path

import gemmi
import numpy as np
import pytest
from crysplugins_test_support import hand_fixture

from crysplugins.crystal import io
from crysplugins.crystal.atom_fit import build_atoms, map_terms
from crysplugins.crystal.covalent_match import bond_graph, hand_vote, molecule_graph
from crysplugins.crystal.fourier import FourierGrid
from crysplugins.crystal.maps import invert_grid
from crysplugins.crystal.phasing_input import shannon_grid_shape
from crysplugins.crystal.refine import RefineResult
from crysplugins.errors import CrysError
from crysplugins.interface import CrystalMap
from crysplugins.runtime import fragment_phasing as fp
from crysplugins.runtime import models
from crysplugins.runtime.hand import hand_logits
from crysplugins.training.hand_chirality import degraded_map

DATA = Path(__file__).resolve().parent / "data" / "atom_hand_maps.npz"
EXAMPLE = Path(__file__).resolve().parents[1] / "crysplugins" / "data" / "examples" / "patterson_density"
CARD = "fragment_hand_atoms"


@pytest.fixture(autouse=True)
def shipped_models(monkeypatch):
    monkeypatch.delenv(models.ENV_MODELS, raising=False)
    models.clear_cache()


@pytest.fixture(scope="module")
def example_map():
    """The shipped example's true-phase map (Thr-Met, 1.5 Å, an 8 × 12 × 12 Å triclinic cell) and its cell."""
    truth = io.read_mtz(str(EXAMPLE / "2XHE_1_460_phases.mtz"), need=("F", "PHI"))
    shape = shannon_grid_shape(truth.cell, gemmi.SpaceGroup("P 1"), 1.5)
    grid = FourierGrid(truth.miller_array(), shape, float(truth.cell.volume))
    return grid.to_map(truth.values("F") * np.exp(1j * np.radians(truth.values("PHI")))), truth.cell


@pytest.fixture(scope="module")
def held_out_maps():
    maps, z = hand_fixture(DATA)
    return maps, z["cells"].astype(float), [str(s) for s in z["sequences"]]


def test_the_example_map_gives_back_its_15_atoms_and_both_alphas_vote_l(example_map):
    rho, cell = example_map
    fitted = build_atoms(rho, cell, 15)
    assert fitted.residual < 0.01  # B = 30 Å² fits a B = 20 Å² map of real atoms almost exactly
    assert fitted.weights.max() > 2.2 * np.median(fitted.weights)  # the Met sulphur (16 electrons against 6)
    read = hand_vote(fitted, cell, "TM")
    assert read.vote == 2 and read.matched == 15 == read.n_atoms
    mirrored = hand_vote(build_atoms(invert_grid(rho), cell, 15), cell, "TM")
    assert mirrored.vote == -2 and mirrored.matched == 15


@pytest.mark.parametrize("seed", [0, 2, 3])
def test_partial_structure_recycling_finds_the_atoms_of_a_map_with_35_degree_phase_errors(example_map, seed):
    rho, cell = example_map
    noisy = degraded_map(rho, [cell.a, cell.b, cell.c, cell.alpha, cell.beta, cell.gamma], 1.5, 35.0,
                         np.random.default_rng(seed))
    plain = hand_vote(build_atoms(noisy, cell, 15), cell, "TM")
    recycled = hand_vote(build_atoms(noisy, cell, 15, rephase_rounds=2), cell, "TM")
    assert plain.matched < 0.85 * 15  # the phase errors displace the atoms: the card's gate would not let it vote
    assert recycled.matched >= 14 and recycled.vote == 2  # both Cα read L
    assert recycled.fitted.residual < 0.5 * plain.fitted.residual


def test_the_covalent_graph_of_a_sequence():
    tm = molecule_graph("TM")
    assert len(tm.atoms) == 15 and sum(len(n) for n in tm.neighbours) == 2 * 14  # a tree: 14 bonds
    assert tm.index[(1, "N")] in tm.neighbours[tm.index[(0, "C")]]  # the peptide bond
    pro = molecule_graph("P")
    assert len(pro.atoms) == 7 and sum(len(n) for n in pro.neighbours) == 2 * 7  # the pyrrolidine ring closes


def test_bonds_between_fitted_atoms_use_the_nearest_periodic_image(example_map):
    rho, cell = example_map
    fitted = build_atoms(rho, cell, 15)
    linked, vectors = bond_graph(fitted, cell)
    assert linked.sum() == 2 * 14 and np.allclose(vectors, -vectors.transpose(1, 0, 2))
    assert map_terms(rho, cell).hkl.shape[1] == 3


def test_the_card_is_right_and_antisymmetric_on_held_out_true_maps(held_out_maps):
    maps, cells, sequences = held_out_maps
    logits = np.array([hand_logits(m[None], CARD, cells=[c], sequences=[s])[0]
                       for m, c, s in zip(maps, cells, sequences)])
    assert (logits < 0).sum() >= len(maps) - 1, f"wrong on {[s for s, x in zip(sequences, logits) if x >= 0]}"
    flipped = np.array([hand_logits(invert_grid(m)[None], CARD, cells=[c], sequences=[s])[0]
                        for m, c, s in zip(maps[:4], cells[:4], sequences[:4])])
    assert np.allclose(flipped, -logits[:4])


def test_a_batch_takes_one_cell_and_sequence_per_map(held_out_maps):
    maps, cells, sequences = held_out_maps
    pick = [0, 1, 2, 3, 0, 1]  # six maps of one shape: a list of six cells or sequences is not one value
    batch = np.stack([maps[i] for i in pick])
    one_by_one = [hand_logits(maps[i][None], CARD, cells=[cells[i]], sequences=[sequences[i]])[0] for i in pick]
    unit_cells = [gemmi.UnitCell(*cells[i]) for i in pick]
    assert np.allclose(hand_logits(batch, CARD, cells=unit_cells, sequences=[sequences[i] for i in pick]), one_by_one)
    same = hand_logits(batch[[0, 4]], CARD, cells=cells[0], sequences=sequences[0])  # one cell and sequence for all
    assert np.allclose(same, [one_by_one[0]] * 2)


def test_without_a_vote_the_fallback_decides(held_out_maps):
    maps, cells, sequences = held_out_maps
    m, c = maps[0], cells[0]
    fallback = hand_logits(m[None], "fragment_hand_gated", cells=[c])[0]
    assert hand_logits(m[None], CARD, cells=[c])[0] == fallback  # no sequence
    assert hand_logits(m[None], CARD, cells=[c], sequences=["GG"])[0] == fallback  # no Cα with a Cβ
    assert hand_logits(m[None], CARD, cells=[c], sequences=["AAAAAA"])[0] == fallback  # over max_residues
    flat = np.full_like(m, 0.5)  # no Fourier terms: no atoms, no vote
    assert build_atoms(flat, gemmi.UnitCell(*c), 10).frac.shape == (0, 3)
    assert hand_logits(flat[None], CARD, cells=[c], sequences=[sequences[0]])[0] == \
        hand_logits(flat[None], "fragment_hand_gated", cells=[c])[0]
    with pytest.raises(CrysError, match="needs each map's cell"):
        hand_logits(m[None], CARD, sequences=[sequences[0]])


def test_a_damaged_atoms_card_is_refused(tmp_path, monkeypatch, held_out_maps):
    maps, cells, sequences = held_out_maps
    card = json.loads(models.find_card(CARD).path.read_text())
    card["min_matched"] = 2.0
    (tmp_path / f"{CARD}.json").write_text(json.dumps(card))
    monkeypatch.setenv(models.ENV_MODELS, str(tmp_path))
    models.clear_cache()
    with pytest.raises(CrysError, match="the card is damaged"):
        hand_logits(maps[0][None], CARD, cells=[cells[0]], sequences=[sequences[0]])
    card["min_matched"], card["rephase_rounds"] = 0.85, -1
    (tmp_path / f"{CARD}.json").write_text(json.dumps(card))
    models.clear_cache()
    with pytest.raises(CrysError, match="the card is damaged"):
        hand_logits(maps[0][None], CARD, cells=[cells[0]], sequences=[sequences[0]])
    card["rephase_rounds"], card["fallback"] = 2, CARD  # a fallback that would call itself
    (tmp_path / f"{CARD}.json").write_text(json.dumps(card))
    models.clear_cache()
    with pytest.raises(CrysError, match="names another atom-fit card"):
        hand_logits(maps[0][None], CARD, cells=[cells[0]], sequences=[sequences[0]])


def test_fragment_phasing_reads_the_sequence_to_put_the_example_on_the_l_hand(example_map):
    rho, cell = example_map
    d_map = invert_grid(rho)  # on the D hand, as charge flipping may leave it
    hkl = np.array([(h, k, l) for h in range(-4, 5) for k in range(-6, 7) for l in range(0, 7)
                    if (h, k, l) != (0, 0, 0)])
    f_map, _ = FourierGrid(hkl, d_map.shape, float(cell.volume)).from_map(d_map)
    res = RefineResult(CrystalMap.from_array(d_map.astype(np.float32), cell, gemmi.SpaceGroup("P 1")), hkl,
                       np.degrees(np.angle(f_map)), np.abs(f_map), np.ones(len(hkl)), 1.0, True)
    assert models.find_card(fp.HAND_MODEL)["task"] == "hand-atoms"  # reads the sequence, as this card does
    how, hand = fp.place(res, sequence="TM")
    assert hand is not None and hand.inverted and hand.confidence > 0.99 and "inverted" in how
