"""Charge flipping (issue #9): E-values, a solved dipeptide at 1.5 Å, and the predictor plugin."""
from __future__ import annotations

from pathlib import Path

import gemmi
import numpy as np
import pytest

from crysplugins.crystal import charge_flipping as cf
from crysplugins.crystal import io
from crysplugins.crystal.origin import search_origin_hand
from crysplugins.crystal.refine import observed_data
from crysplugins.errors import CrysError
from crysplugins.host import Host
from crysplugins.interface import Reflections, Request

DATA = Path(__file__).parent / "data"
import crysplugins_classical_fixtures as fx  # registered by conftest.py


@pytest.fixture(scope="module")
def frag2():
    return fx.amplitudes_and_phases(DATA / "frag2.pdb", 1.5)


def test_normalised_amplitudes(frag2):
    st, hkl, f, phi, seq = frag2
    e = cf.normalise_amplitudes(st.cell, hkl, f)
    assert np.mean(e ** 2) == pytest.approx(1.0, abs=0.1)
    d = 1 / np.sqrt(4 * cf.stol2(st.cell, hkl))
    low, high = d > np.median(d), d <= np.median(d)
    assert np.mean(e[low] ** 2) == pytest.approx(1.0, abs=0.2)
    assert np.mean(e[high] ** 2) == pytest.approx(1.0, abs=0.2)
    assert np.mean(f[high] ** 2) < 0.5 * np.mean(f[low] ** 2)  # F falls off, E does not


def test_solves_dipeptide_at_1p5(frag2):
    st, hkl, f, phi, seq = frag2
    res = cf.solve(st.cell, hkl, f, sequence=seq, n_starts=8, seed=0)
    assert res.origin_arbitrary
    aligned = search_origin_hand(hkl, f, phi, res.refined.phases)
    assert aligned.phase_error < 60.0, f"charge flipping failed: {aligned.phase_error:.1f}°"
    assert aligned.phase_error < 15.0  # measured 3.3°
    assert res.refined.refined
    assert all({"start", "r_factor", "screen_score"} <= set(s) for s in res.starts)


def _mtz(st, hkl, f, sg="P 1"):
    return io.make_mtz(st.cell, gemmi.SpaceGroup(sg), hkl, {"FP": ("F", f), "SIGFP": ("Q", 0.02 * f)})


def test_predictor_plugin(frag2, tmp_path):
    st, hkl, f, phi, seq = frag2
    host = Host(autoload=False)
    pred = host.get("charge-flipping")
    assert pred.origin_arbitrary is True
    io.write_mtz(_mtz(st, hkl, f), tmp_path / "amp.mtz")
    from crysplugins.request import load_request_inputs, run_prediction

    inputs = load_request_inputs(pred, {"mtz": str(tmp_path / "amp.mtz"), "sequence": seq})
    out = run_prediction(pred, inputs)
    assert set(out.maps) == {"density"} and set(out.reflections) == {"phases"}
    refl = out.reflections["phases"]
    back_phi = refl.values("PHI")
    res = search_origin_hand(refl.miller_array(), refl.values("F"),
                                       _phases_at(hkl, phi, refl.miller_array()), back_phi)
    assert res.phase_error < 60.0
    assert out.meta["origin_arbitrary"] is True
    assert out.scalars["solvent_fraction"].value == pytest.approx(
        1 - 1.23 * gemmi.calculate_sequence_weight([gemmi.expand_one_letter(c, gemmi.ResidueKind.AA) for c in seq])
        / st.cell.volume)
    assert out.maps["density"].cell.approx(st.cell, 1e-3)


def _phases_at(hkl, phi, wanted):
    table = {tuple(h): p for h, p in zip(hkl.tolist(), phi.tolist())}
    return np.array([table[tuple(h)] for h in wanted.tolist()])


def test_other_space_groups_are_expanded_with_a_message(frag2):
    st, hkl, f, phi, seq = frag2
    # P -1 data of the same cell: expanding doubles the unique reflections of each centric-free pair
    mtz = io.make_mtz(st.cell, gemmi.SpaceGroup("P -1"), hkl[:200], {"FP": ("F", f[:200])})
    msgs: list[str] = []
    cell, h2, f2 = observed_data(Reflections(mtz=mtz, columns={"F": "FP"}), msgs)
    assert any("expanded to P 1" in m for m in msgs)
    assert len(h2) == 200  # P-1 -> P1 adds only Friedel mates, merged back into one of each pair


def test_missing_amplitudes_is_one_clear_error(frag2, tmp_path):
    st, hkl, f, phi, seq = frag2
    mtz = io.make_mtz(st.cell, gemmi.SpaceGroup("P 1"), hkl, {"PHI": ("P", phi)})
    io.write_mtz(mtz, tmp_path / "phi_only.mtz")
    pred = Host(autoload=False).get("charge-flipping")
    from crysplugins.request import load_request_inputs

    with pytest.raises(CrysError, match="no F"):
        load_request_inputs(pred, {"mtz": str(tmp_path / "phi_only.mtz")})
