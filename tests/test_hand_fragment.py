"""The fragment hand models (``fragment_hand``, ``fragment_hand_gated``; ``hand-chirality`` cards): antisymmetry,
refusal of damaged cards, accuracy on held-out solved maps shipped in tests/data/hand_maps.npz
(make_hand_fixtures.py), the simulated phase errors they are fitted with, and fragment-phasing's use of its hand
model when no transformer set the hand."""
from __future__ import annotations

import json
from pathlib import Path

import gemmi
import numpy as np
import pytest
from crysplugins_test_support import hand_fixture

from crysplugins.crystal.chirality import FEATURE_SETS, VOXEL_FEATURE_SET, n_features, pseudoscalar_features
from crysplugins.crystal.fourier import FourierGrid
from crysplugins.crystal.maps import centre_density, invert_grid
from crysplugins.crystal.refine import RefineResult
from crysplugins.errors import CrysError
from crysplugins.interface import CrystalMap
from crysplugins.runtime import fragment_phasing as fp
from crysplugins.runtime import models
from crysplugins.runtime.hand import hand_confidence, hand_logits
from crysplugins.training.hand_chirality import (degraded_map, fit_head, fit_odd_mlp, head_score, von_mises_kappa)

FIXTURE = Path(__file__).resolve().parent / "data" / "hand_maps.npz"
MODEL = "fragment_hand"


@pytest.fixture(scope="module")
def fixture_maps():
    maps, z = hand_fixture(FIXTURE)
    return maps, z["cells"].astype(float), z["n_residues"], z["d_min"]


@pytest.fixture(autouse=True)
def shipped_models(monkeypatch):
    monkeypatch.delenv(models.ENV_MODELS, raising=False)
    models.clear_cache()


@pytest.mark.parametrize("name", [MODEL, "fragment_hand_gated"])
def test_the_shipped_cards_are_right_on_held_out_solved_maps_and_antisymmetric(fixture_maps, name):
    maps, cells, lengths, d_min = fixture_maps
    logits = np.array([hand_logits(m[None], name, cells=[c])[0] for m, c in zip(maps, cells)])
    right = logits < 0  # every fixture map is the true (L) hand: the call keeps it
    assert right.mean() >= 0.9, f"{right.sum()} of {len(right)} right; wrong: lengths {lengths[~right]}, " \
                                f"d_min {d_min[~right]}"
    inverted = np.array([hand_logits(invert_grid(m)[None], name, cells=[c])[0] for m, c in zip(maps[:4], cells[:4])])
    assert np.allclose(inverted, -logits[:4], atol=1e-3)  # the opposite call (the cube roots amplify round-off)
    card = models.find_card(name)
    assert card.get("feature_set") in FEATURE_SETS + (VOXEL_FEATURE_SET,) and card.get("input") == "refined"
    assert card["metrics"]["test"]["phase_error_0"]["accuracy"] > 0.9


def test_damaged_fragment_hand_cards_are_refused(tmp_path, monkeypatch, fixture_maps):
    maps, cells, _, _ = fixture_maps
    card = json.loads(models.find_card(MODEL).path.read_text())
    monkeypatch.setenv(models.ENV_MODELS, str(tmp_path))
    models.clear_cache()
    for damage in ({"scale": card["scale"][:-1]}, {"head": "forest"},
                   {"weights": [float("nan")] + list(card["weights"][1:])},
                   {"hidden": [[1.0]]} if card.get("head") == "odd-mlp" else {"weights": [1.0, 2.0]}):
        (tmp_path / "broken_hand.json").write_text(json.dumps({**card, "name": "broken_hand", **damage}))
        models.clear_cache()
        with pytest.raises(CrysError, match="damaged"):
            hand_logits(maps[0][None], "broken_hand", cells=[cells[0]])


def test_the_ensemble_sums_its_members_and_fragment_phasing_falls_back_to_it(fixture_maps):
    maps, cells, _, _ = fixture_maps
    members = [(m["model"], m["weight"]) for m in models.find_card("fragment_hand_ensemble")["members"]]
    assert sorted(name for name, _ in members) == ["fragment_hand", "fragment_hand_gated"]
    logits = np.array([hand_logits(m[None], "fragment_hand_ensemble", cells=[c])[0] for m, c in zip(maps, cells)])
    summed = sum(w * np.array([hand_logits(m[None], name, cells=[c])[0] for m, c in zip(maps, cells)])
                 for name, w in members)
    assert np.allclose(logits, summed) and (logits < 0).mean() >= 0.9  # the fixture maps are all on the L hand
    inverted = hand_logits(invert_grid(maps[0])[None], "fragment_hand_ensemble", cells=[cells[0]])[0]
    assert inverted == pytest.approx(-logits[0], abs=1e-3)
    assert models.find_card(fp.HAND_MODEL)["fallback"] == "fragment_hand_ensemble"
    assert hand_logits(maps[0][None], fp.HAND_MODEL, cells=[cells[0]])[0] == logits[0]  # no sequence: the fallback


def test_a_damaged_ensemble_card_is_refused(tmp_path, monkeypatch, fixture_maps):
    maps, cells, _, _ = fixture_maps
    card = json.loads(models.find_card("fragment_hand_ensemble").path.read_text())
    monkeypatch.setenv(models.ENV_MODELS, str(tmp_path))
    for damage, message in (({"members": []}, "damaged"), ({"members": [{"model": MODEL, "weight": 0}]}, "damaged"),
                            ({"members": [{"model": MODEL}]}, "damaged"),
                            ({"members": [{"model": fp.HAND_MODEL, "weight": 1}]}, "not a 'hand-chirality'"),
                            ({"input": "prediction"}, "not a 'hand-chirality'")):
        (tmp_path / "broken_ensemble.json").write_text(json.dumps({**card, "name": "broken_ensemble", **damage}))
        models.clear_cache()
        with pytest.raises(CrysError, match=message):
            hand_logits(maps[0][None], "broken_ensemble", cells=[cells[0]])


def test_simulated_phase_errors_have_the_asked_mean_and_keep_the_amplitudes(fixture_maps):
    assert np.degrees(np.abs(np.random.default_rng(0).vonmises(0, von_mises_kappa(35.0), 200000)).mean()) \
        == pytest.approx(35.0, abs=0.5)
    with pytest.raises(CrysError):
        von_mises_kappa(95.0)
    maps, cells, _, d_min = fixture_maps
    rho = maps[0]
    worse = degraded_map(rho, cells[0], float(d_min[0]), 35.0, np.random.default_rng(1))
    f0, f1 = np.fft.rfftn(rho)[:, :, 1:-1], np.fft.rfftn(worse)[:, :, 1:-1]  # l = 0 (and Nyquist): see degraded_map
    strong = np.abs(f0) > 0.05 * np.abs(f0).max()
    ratio = np.abs(f1[strong]) / np.abs(f0[strong])
    assert np.allclose(ratio, ratio.mean(), rtol=0.02)  # amplitudes kept (up to the rms scale)
    err = np.degrees(np.abs(np.angle(f1[strong] / f0[strong])))
    assert 25 < err.mean() < 45 and np.sqrt((worse ** 2).mean()) == pytest.approx(1.0)


def test_the_odd_head_is_antisymmetric_and_learns_a_sign():
    rng = np.random.default_rng(0)
    w_true = rng.normal(size=10)
    X = rng.normal(size=(300, 10))
    X = X * np.sign(X @ w_true)[:, None]  # the "L" maps: w_true · x > 0
    head = fit_head(X, "odd-mlp", 1e-3)
    s = head_score(X, head)
    assert np.allclose(head_score(-X, head), -s) and (s > 0).mean() > 0.9
    W, v = fit_odd_mlp(X / head["scale"], hidden=4, iterations=50)
    assert W.shape == (10, 4) and v.shape == (4,)
    assert hand_confidence(0.0) == 0.5 and hand_confidence(-3.0) == hand_confidence(3.0) > 0.95


def test_fragment_phasing_places_a_centred_solution_on_the_l_hand(fixture_maps):
    maps, cells, _, _ = fixture_maps
    k = int(np.argmin([hand_logits(m[None], fp.HAND_MODEL, cells=[c])[0] for m, c in zip(maps, cells)]))  # surest
    cell = gemmi.UnitCell(*cells[k])
    d_map = invert_grid(maps[k])  # a solution on the D hand, as charge flipping may leave it
    hkl = np.array([(h, kk, l) for h in range(-3, 4) for kk in range(-3, 4) for l in range(0, 4)
                    if (h, kk, l) != (0, 0, 0)])
    f_map, _ = FourierGrid(hkl, d_map.shape, float(cell.volume)).from_map(d_map)
    res = RefineResult(CrystalMap.from_array(d_map.astype(np.float32), cell, gemmi.SpaceGroup("P 1")), hkl,
                       np.degrees(np.angle(f_map)), np.abs(f_map), np.ones(len(hkl)), 1.0, True)
    how, hand = fp.place(res)
    assert hand is not None and hand.inverted and hand.confidence > 0.5 and "inverted" in how
    assert hand_logits(np.asarray(res.map.array)[None], fp.HAND_MODEL, cells=[cell])[0] < 0  # now on the L hand
    f_new, _ = FourierGrid(hkl, d_map.shape, float(cell.volume)).from_map(np.asarray(res.map.array, float))
    assert np.allclose(np.exp(1j * np.radians(res.phases)), np.exp(1j * np.angle(f_new)), atol=1e-4)  # follow the map
    how, hand = fp.place(res, hand_model=None)
    assert hand is None and how.startswith("centred")


def test_placement_moves_the_phases_even_of_reflections_the_map_does_not_hold():
    """A reflection with zero figure of merit is absent from the solution's map, so the moved map cannot
    give its phase; placement moves every phase analytically (φ + 360° h·t)."""
    rng = np.random.default_rng(4)
    cell, shape = gemmi.UnitCell(12, 13, 14, 90, 90, 90), (14, 14, 14)
    hkl = np.array([(h, k, l) for h in range(-5, 6) for k in range(-5, 6) for l in range(0, 6)
                    if l > 0 or h > 0 or (h == 0 and k > 0)])  # one of each Friedel pair
    f = rng.normal(size=len(hkl)) + 1j * rng.normal(size=len(hkl))
    fom = np.where(rng.random(len(hkl)) < 0.2, 0.0, 1.0)
    fg = FourierGrid(hkl, shape, float(cell.volume))
    rho = fg.to_map(fom * f)
    res = RefineResult(CrystalMap.from_array(rho.astype(np.float32), cell, gemmi.SpaceGroup("P 1")), hkl,
                       np.degrees(np.angle(f)), np.abs(f), fom, 1.0, True)
    _, shift = centre_density(rho, cell=cell)
    fp.place(res, hand_model=None)
    want = np.exp(1j * (np.angle(f) + 2 * np.pi * (hkl @ shift)))
    assert np.allclose(np.exp(1j * np.radians(res.phases)), want, atol=1e-6)
    f_moved, _ = fg.from_map(np.asarray(res.map.array, dtype=np.float64))
    held = fom > 0  # where the map holds the reflection, the moved map agrees with the moved phases
    assert np.allclose(np.exp(1j * np.angle(f_moved[held])), want[held], atol=2e-3)


def test_the_v2_features_extend_v1_and_are_pseudoscalars(fixture_maps):
    maps, cells, _, _ = fixture_maps
    v1 = pseudoscalar_features(maps[1], cells[1])
    v2 = pseudoscalar_features(maps[1], cells[1], feature_set="pseudoscalar-v2")
    assert len(v2) == n_features(8, "pseudoscalar-v2") > len(v1) == n_features(8)
    assert np.allclose(v2[:len(v1)], v1)
    assert np.allclose(pseudoscalar_features(invert_grid(maps[1]), cells[1], feature_set="pseudoscalar-v2"), -v2,
                       atol=1e-4)
    with pytest.raises(ValueError):
        pseudoscalar_features(maps[1], cells[1], feature_set="pseudoscalar-v0")


def test_cli_true_maps_fit_needs_a_dataset(tmp_path):
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "crysplugins.cli", "train", "hand-chirality", "--true-maps",
                        "--out", str(tmp_path / "run")], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "--data" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "run").exists()
