"""`crysplugins evaluate`: predictors run through the host on the same MTZ files, scored against truth."""
from __future__ import annotations

import json
from pathlib import Path

import gemmi
import numpy as np
import pytest

from crysplugins.cli import main
from crysplugins.crystal import io
from crysplugins.crystal.fourier import phase_shift
from crysplugins.errors import CrysError
from crysplugins.evaluation import compare
from crysplugins.hookspecs import hookimpl
from crysplugins.host import Host
from crysplugins.interface import InputSpec, Kind, OutputSpec, Prediction, Reflections

DATA = Path(__file__).parent / "data"
import crysplugins_classical_fixtures as fx  # registered by conftest.py


@pytest.fixture(scope="module")
def mtz_dir(tmp_path_factory):
    """frag2 at 1.5 Å written as the dataset writes test examples: <id>_amplitudes.mtz, <id>_phases.mtz, <id>.seq."""
    d = tmp_path_factory.mktemp("mtz")
    st, hkl, f = fx.structure_factors(DATA / "frag2.pdb", 1.5)
    amp, phi = np.abs(f), np.angle(f, deg=True)
    p1 = gemmi.SpaceGroup("P 1")
    io.write_mtz(io.make_mtz(st.cell, p1, hkl, {"F": ("F", amp), "SIGF": ("Q", 0.02 * amp)}), d / "ex1_amplitudes.mtz")
    io.write_mtz(io.make_mtz(st.cell, p1, hkl, {"F": ("F", amp), "PHI": ("P", phi)}), d / "ex1_phases.mtz")
    (d / "ex1.seq").write_text(gemmi.one_letter_code([r.name for r in st[0][0]]) + "\n")
    return d, st, hkl, amp, phi


class KnownPhases:
    """A test predictor: returns the true phases, moved by a known offset/shift/hand (no map)."""

    version = "1"
    summary = "test predictor with known phase errors"
    inputs = (InputSpec("data", Kind.REFLECTIONS, "amplitudes", required=True, columns=("F",)),
              InputSpec("offset", Kind.FLOAT, "phase offset in degrees", default=0.0))
    outputs = (OutputSpec("phases", Kind.REFLECTIONS, "phases"),)

    def __init__(self, name, truth, shift, invert, origin_arbitrary, noise=0.0):
        self.name, self.truth, self.shift, self.invert = name, truth, shift, invert
        self.origin_arbitrary, self.noise = origin_arbitrary, noise

    def predict(self, request):
        st, hkl, amp, phi = self.truth
        moved = (-phi if self.invert else phi) + np.degrees(phase_shift(hkl, self.shift)) + request.get("offset", 0.0)
        moved = moved + np.random.default_rng(0).normal(0.0, self.noise, len(moved)) if self.noise else moved
        mtz = io.make_mtz(st.cell, gemmi.SpaceGroup("P 1"), hkl, {"F": ("F", amp), "PHI": ("P", moved)})
        return Prediction(reflections={"phases": Reflections(mtz=mtz, columns={"F": "F", "PHI": "PHI"})})


class KnownPlugin:
    def __init__(self, truth):
        self.truth = truth

    @hookimpl
    def register_predictors(self, register):
        register(KnownPhases("placed", self.truth, np.zeros(3), False, False))
        register(KnownPhases("moved-declared", self.truth, np.array([0.3, 0.6, 0.1]), True, True))
        register(KnownPhases("moved-undeclared", self.truth, np.array([0.3, 0.6, 0.1]), True, False))
        register(KnownPhases("noisy", self.truth, np.zeros(3), False, False, noise=60.0))


def test_label_parsing():
    lab = compare.PredictorLabel.parse("patterson-density:refine=yes,cycles=3")
    assert lab.name == "patterson-density" and lab.options == {"refine": "yes", "cycles": "3"}
    with pytest.raises(CrysError, match="not an option"):
        compare.PredictorLabel.parse("x:refine")


def test_origin_handling_and_options(mtz_dir):
    d, st, hkl, amp, phi = mtz_dir
    host = Host(autoload=False, extra_plugins=[("known", KnownPlugin((st, hkl, amp, phi)))])
    examples = compare.examples_from_mtz_dir(d)
    assert examples[0].sequence and examples[0].id == "ex1"
    labels = [compare.PredictorLabel.parse(x) for x in
              ("placed", "placed:offset=25", "moved-declared", "moved-undeclared")]
    recs = {r["predictor"]: r for r in compare.evaluate(host, labels, examples)}
    assert recs["placed"]["phase_error"] < 1e-3 and recs["placed"]["pearson"] > 0.9999
    assert recs["placed:offset=25"]["phase_error"] == pytest.approx(25.0, abs=0.01)
    assert recs["moved-declared"]["phase_error"] < 1e-3 and recs["moved-declared"]["hand_inverted"]
    assert recs["moved-declared"]["pearson"] > 0.9999
    assert recs["moved-undeclared"]["phase_error"] > 60  # compared as placed
    rows = compare.summarise(list(recs.values()))
    by = {r["predictor"]: r for r in rows}
    assert by["placed"]["success_rate"] == 1.0 and by["moved-undeclared"]["success_rate"] == 0.0
    assert len(by["placed"]["shells"]) == 12
    forced = compare.evaluate(host, [compare.PredictorLabel.parse("moved-undeclared")], examples, origin="always")
    assert forced[0]["phase_error"] < 1e-3 and forced[0]["hand_inverted"]
    with pytest.raises(CrysError, match="has no input 'refine'"):
        compare.evaluate(host, [compare.PredictorLabel.parse("placed:refine=yes")], examples)


def test_evaluate_command_with_charge_flipping(mtz_dir, tmp_path, capsys):
    d, *_ = mtz_dir
    out = tmp_path / "eval"
    code = main(["evaluate", "--predictor", "charge-flipping", "--predictor", "charge-flipping:starts=2",
                 "--mtz-dir", str(d), "--out", str(out), "--quiet"])
    assert code == 0
    text = capsys.readouterr().out
    assert "| charge-flipping | 2 | 1.50 | 1 | 100% |" in text  # a stratum per length x resolution
    result = json.loads((out / "results.json").read_text())
    assert {r["predictor"] for r in result["summary"]} == {"charge-flipping", "charge-flipping:starts=2"}
    rec = result["records"][0]
    assert rec["origin_arbitrary"] and rec["phase_error"] < 60 and rec["seconds"] > 0
    assert -1 <= rec["pearson_as_placed"] <= rec["pearson"] + 1e-6  # as placed: no origin or hand search
    assert (out / "summary.tsv").exists() and (out / "summary.md").exists()
    assert (out / "shells.png").read_bytes()[:4] == b"\x89PNG"


def test_evaluate_user_errors(mtz_dir, tmp_path, capsys):
    d, *_ = mtz_dir
    assert main(["evaluate", "--predictor", "no-such", "--mtz-dir", str(d), "--out", str(tmp_path / "o")]) != 0
    assert "no predictor called 'no-such'" in capsys.readouterr().err
    assert main(["evaluate", "--predictor", "charge-flipping", "--mtz-dir", str(tmp_path),
                 "--out", str(tmp_path / "o")]) != 0
    assert "no <id>_amplitudes.mtz" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_then_refine_adds_refined_rows(mtz_dir):
    d, st, hkl, amp, phi = mtz_dir
    host = Host(autoload=False, extra_plugins=[("known", KnownPlugin((st, hkl, amp, phi)))])
    examples = compare.examples_from_mtz_dir(d)
    recs = {r["predictor"]: r for r in compare.evaluate(host, [compare.PredictorLabel.parse("noisy")], examples,
                                                         refiners=["density-modification"])}
    assert set(recs) == {"noisy", "noisy + density-modification"}
    raw, refined = recs["noisy"], recs["noisy + density-modification"]
    assert raw["phase_error"] > 40.0
    assert refined["phase_error"] < 20.0 and refined["refined"]  # compared as placed: the origin was kept
    assert refined["seconds"] > raw["seconds"]
    with pytest.raises(CrysError, match="no refiner called 'nope'"):
        compare.evaluate(host, [compare.PredictorLabel.parse("noisy")], examples, refiners=["nope"])
