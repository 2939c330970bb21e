"""The fragment-phasing predictor: registered, runs on the shipped dipeptide, orders its candidates, refuses
bad input in one sentence."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import gemmi
import numpy as np
import pytest

from crysplugins.crystal.fourier import p1_hkl
from crysplugins.crystal.origin import search_origin_hand
from crysplugins.errors import CrysError
from crysplugins.host import Host
from crysplugins.plugins import BUILTINS
from crysplugins.request import load_request_inputs, run_prediction
from crysplugins.runtime import fragment_phasing as fp

DATA = Path(__file__).parent / "data"
import crysplugins_classical_fixtures as fx  # registered by conftest.py


@pytest.fixture(scope="module")
def frag2():
    st, hkl, f = fx.structure_factors(DATA / "frag2.pdb", 1.5)
    seq = gemmi.one_letter_code([r.name for r in st[0][0]])
    return st.cell, hkl, np.abs(f), np.angle(f, deg=True), seq


def test_registered_as_a_builtin():
    assert "fragment_phasing" in BUILTINS
    pred = Host(autoload=False).get("fragment-phasing")
    assert pred.origin_arbitrary is True
    assert {o.name for o in pred.outputs} >= {"density", "phases", "score", "candidates"}


def test_runs_on_the_shipped_dipeptide():
    pred = Host(autoload=False).get("fragment-phasing")
    out = run_prediction(pred, load_request_inputs(pred, pred.example_inputs()))
    table = out.tables["candidates"]
    assert table.columns[0] == "candidate" and "probability" in table.columns
    rows = table.as_dicts()
    assert sum(r["winner"] for r in rows) == 1
    winner = next(r for r in rows if r["winner"])
    assert winner["candidate"] == out.meta["winner"]
    assert winner["dm_cc"] == max(r["dm_cc"] for r in rows)
    assert 0.0 <= out.scalars["score"].value <= 1.0
    assert out.maps["density"].array.std() > 0
    assert any("Best of" in m for m in out.messages)


def test_network_candidates_come_after_the_first_start(frag2):
    cell, hkl, f, phi, seq = frag2
    setup = fp.make_setup(cell, hkl, f, seq)
    calls = []

    def network():  # a "prediction": the true phases, 40° of noise
        calls.append(1)
        return phi + np.random.default_rng(0).normal(0.0, 40.0, len(phi))

    res = fp.solve(setup, network, n_starts=2, stop_score=1.01, dm_cycles=30, flip_cycles=200, extra_starts=0,
                   consensus=False)
    names = [c.name for c in res.candidates]
    assert names == ["charge-flipping start 0", "network + DM", "charge flipping from the network",
                     "charge-flipping start 1"]
    assert len(calls) == 1
    assert all({"agreement", "dm_gain", "dm_log"} <= set(c.features) for c in res.candidates)
    assert res.winner.refined.score == max(c.refined.score for c in res.candidates)
    err = search_origin_hand(hkl, f, phi, res.winner.refined.phases).phase_error
    assert err < 60.0


def test_more_starts_when_no_candidate_is_convincing(frag2):
    cell, hkl, f, phi, seq = frag2
    setup = fp.make_setup(cell, hkl, f, seq)
    res = fp.solve(setup, None, n_starts=1, stop_score=1.01, dm_cycles=30, flip_cycles=200, extra_starts=1,
                   extend_below=1.01, consensus=False)
    assert [c.name for c in res.candidates] == ["charge-flipping start 0", "charge-flipping start 1"]
    res = fp.solve(setup, None, n_starts=1, stop_score=1.01, dm_cycles=30, flip_cycles=200, extra_starts=1,
                   extend_below=0.0, consensus=False)
    assert [c.name for c in res.candidates] == ["charge-flipping start 0"]


def test_consensus_averages_the_agreeing_candidates_only(frag2):
    cell, hkl, f, phi, seq = frag2
    setup = fp.make_setup(cell, hkl, f, seq)
    rng = np.random.default_rng(3)

    def noisy(shift, inverted):  # the truth with 45° of noise, on another origin and hand
        p = phi + rng.normal(0.0, 45.0, len(phi))
        return (-p if inverted else p) + 360.0 * (hkl @ np.asarray(shift))

    sets = [noisy((0, 0, 0), False), noisy((0.3, 0.1, 0.7), True), noisy((0.5, 0.5, 0.0), False),
            rng.uniform(-180.0, 180.0, len(phi))]  # three partly right solutions and a wrong one
    cands = [fp.dm_candidate(setup, p, f"candidate {k}", dm_cycles=1) for k, p in enumerate(sets)]
    errors = [search_origin_hand(hkl, f, phi, c.refined.phases).phase_error for c in cands]
    cons = fp.consensus_candidate(setup, cands, dm_cycles=1)
    assert cons is not None and cons.name == "consensus of 3 candidates"
    assert search_origin_hand(hkl, f, phi, cons.refined.phases).phase_error < min(errors[:3]) - 5.0
    assert fp.consensus_candidate(setup, cands[3:] + cands[3:2], dm_cycles=1) is None  # one candidate: none


def test_the_consensus_joins_only_when_no_candidate_converged(frag2):
    cell, hkl, f, phi, seq = frag2
    setup = fp.make_setup(cell, hkl, f, seq)
    kw = dict(n_starts=2, dm_cycles=30, flip_cycles=200, extra_starts=0)
    names = [c.name for c in fp.solve(setup, None, stop_score=1.01, **kw).candidates]
    assert len(names) == 3 and names[2].startswith("consensus of")
    res = fp.solve(setup, None, stop_score=0.0, **kw)
    assert [c.name for c in res.candidates] == ["charge-flipping start 0"]


def test_stops_when_the_first_start_is_refined(frag2):
    cell, hkl, f, phi, seq = frag2
    setup = fp.make_setup(cell, hkl, f, seq)
    calls = []
    res = fp.solve(setup, lambda: calls.append(1), n_starts=8)
    assert len(res.candidates) == 1 and not calls  # the network is never asked when start 0 suffices
    assert res.winner.refined.score >= 0.999


def test_bad_input_is_one_sentence(tmp_path):
    not_mtz = tmp_path / "x.mtz"
    not_mtz.write_text("not an mtz\n")
    run = subprocess.run([sys.executable, "-m", "crysplugins.cli", "predict", "fragment-phasing", "--mtz",
                          str(not_mtz), "--out", str(tmp_path / "out")], capture_output=True, text=True)
    assert run.returncode != 0
    assert "Traceback" not in run.stderr
    assert len([ln for ln in run.stderr.splitlines() if ln.strip()]) == 1
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_packed_cell_is_refused_before_any_work():
    """A fragment that fills its cell (a peptide's own crystal: two LVHSSN in the 5E5Z cell, 8 % solvent) is outside
    what fragment-phasing was built and calibrated for (the command line's sentence: tests/test_cli_errors.py)."""
    cell = gemmi.UnitCell(9.643, 9.609, 19.029, 90, 101.224, 90)
    hkl = p1_hkl(cell, 2.0)
    f = np.random.default_rng(0).rayleigh(10.0, len(hkl))
    with pytest.raises(CrysError, match="only 8 % solvent"):
        fp.make_setup(cell, hkl, f, "LVHSSN" * 2)
    with pytest.raises(CrysError, match="only 30 % solvent"):
        fp.make_setup(cell, hkl, f, None, solvent_fraction=0.3)
    assert fp.make_setup(cell, hkl, f, "LVHSSN").n_atoms > 0  # one copy: 53 % solvent, taken


def test_the_stopping_cc_falls_from_2_angstrom():
    assert fp.stopping_cc(1.5) == fp.HIGH_RES_STOP == 0.999
    assert fp.stopping_cc(2.0) == fp.stopping_cc(2.5) == fp.LOW_RES_STOP < fp.HIGH_RES_STOP


def test_at_2_angstrom_the_first_start_above_the_stopping_cc_ends_the_search():
    st, hkl, f = fx.structure_factors(DATA / "frag2.pdb", 2.0)
    seq = gemmi.one_letter_code([r.name for r in st[0][0]])
    setup = fp.make_setup(st.cell, hkl, np.abs(f), seq)
    res = fp.solve(setup, None, n_starts=4, extra_starts=0)
    scores = [c.refined.score for c in res.candidates]
    assert fp.LOW_RES_STOP <= scores[-1] < fp.HIGH_RES_STOP  # a right map at 2 Å: below the 1.5 Å stop
    assert all(s < fp.LOW_RES_STOP for s in scores[:-1])
    err = search_origin_hand(hkl, np.abs(f), np.angle(f, deg=True), res.winner.refined.phases).phase_error
    assert err < 60.0
