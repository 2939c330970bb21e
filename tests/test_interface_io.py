"""The common interface (crystal objects, specs, request checks) and crystal I/O on gemmi."""
from __future__ import annotations

import gemmi
import numpy as np
import pytest

from crysplugins.crystal import io
from crysplugins.errors import Cancelled, CrysError
from crysplugins.inputs import load_input, parse_columns
from crysplugins.interface import (CancelToken, CrystalMap, InputSpec, Kind, OutputSpec, Prediction, Request,
                                   Scalar, Sequence, Table, check_request, validate_predictor)
from crysplugins_test_support import blob_structure


def _map() -> CrystalMap:
    arr = np.arange(6 * 8 * 10, dtype=np.float32).reshape(6, 8, 10) / 100.0
    return CrystalMap.from_array(arr, gemmi.UnitCell(12, 16, 20, 90, 100, 90), "C 1 2 1", name="m")


# ------------------------------------------------------------------------------------ maps

def test_map_round_trip_keeps_cell_spacegroup_grid(tmp_path):
    cmap = _map()
    # values must be consistent with the C2 symmetry for a CCP4 round trip: symmetrise first
    cmap.grid.symmetrize_avg()
    path = io.write_map(cmap, tmp_path / "m.ccp4")
    back = io.read_map(path)
    assert back.shape == cmap.shape
    assert back.cell.approx(cmap.cell, 1e-4)
    assert back.spacegroup.hm == "C 1 2 1"
    np.testing.assert_allclose(back.array, cmap.array, atol=1e-6)
    assert back.spacing() == pytest.approx((2.0, 2.0, 2.0))


def test_from_array_rejects_non_3d():
    with pytest.raises(CrysError, match="3-D"):
        CrystalMap.from_array(np.zeros((4, 4)), gemmi.UnitCell(10, 10, 10, 90, 90, 90), "P 1")


def test_partial_map_is_refused(tmp_path):
    cmap = _map()
    box = gemmi.FractionalBox()
    box.extend(gemmi.Fractional(0.1, 0.1, 0.1))
    box.extend(gemmi.Fractional(0.5, 0.5, 0.5))
    ccp4 = gemmi.Ccp4Map()
    ccp4.grid = cmap.grid
    ccp4.grid.spacegroup = gemmi.SpaceGroup("P 1")
    ccp4.update_ccp4_header()
    ccp4.set_extent(box)
    path = tmp_path / "part.ccp4"
    ccp4.write_ccp4_map(str(path))
    with pytest.raises(CrysError, match="covers only"):
        io.read_map(path)


# ------------------------------------------------------------------------------------ MTZ

def _mtz(tmp_path, columns):
    cell = gemmi.UnitCell(30, 40, 50, 90, 90, 90)
    hkl = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 1], [2, 3, 4]])
    mtz = io.make_mtz(cell, gemmi.SpaceGroup("P 21 21 21"), hkl, columns)
    return io.write_mtz(mtz, tmp_path / "d.mtz")


def test_mtz_auto_pick_and_notes(tmp_path):
    n = 4
    path = _mtz(tmp_path, {"FP": ("F", np.arange(1, n + 1)), "SIGFP": ("Q", np.ones(n)),
                           "PHIB": ("P", np.zeros(n)), "FOM": ("W", np.full(n, 0.5))})
    refl = io.read_mtz(path, need=("F", "PHI"), want=("FOM",))
    assert refl.columns == {"F": "FP", "PHI": "PHIB", "FOM": "FOM", "SIGF": "SIGFP"}
    assert len(refl.notes) == 1 and "F=FP, PHI=PHIB, FOM=FOM, SIGF=SIGFP" in refl.notes[0]
    np.testing.assert_allclose(refl.amplitudes(), [1, 2, 3, 4])
    assert refl.miller_array().shape == (n, 3)
    assert refl.d_min == pytest.approx(1 / np.sqrt((2 / 30) ** 2 + (3 / 40) ** 2 + (4 / 50) ** 2), rel=1e-4)


def test_mtz_intensities_become_amplitudes(tmp_path):
    path = _mtz(tmp_path, {"I": ("J", np.array([4.0, 9.0, -1.0, 16.0])), "SIGI": ("Q", np.ones(4))})
    refl = io.read_mtz(path, need=("F|I",))
    assert refl.columns["I"] == "I" and refl.columns["SIGI"] == "SIGI"
    np.testing.assert_allclose(refl.amplitudes(), [2, 3, 0, 4])


def test_mtz_missing_role_and_label(tmp_path):
    path = _mtz(tmp_path, {"FP": ("F", np.ones(4))})
    with pytest.raises(CrysError, match="no PHI"):
        io.read_mtz(path, need=("PHI",))
    with pytest.raises(CrysError, match="no column 'FWT'"):
        io.read_mtz(path, columns={"F": "FWT"})
    assert parse_columns("f=FP, PHI=PHWT") == {"F": "FP", "PHI": "PHWT"}
    with pytest.raises(CrysError):
        parse_columns("FP")


# ------------------------------------------------------------------------------------ atomic writes

def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    dest = tmp_path / "out" / "x.ccp4"
    with pytest.raises(RuntimeError):
        with io.atomic_path(dest) as tmp:
            tmp.write_text("half")
            raise RuntimeError("disk full")
    assert not dest.exists()
    assert list(dest.parent.iterdir()) == []
    with io.atomic_path(dest) as tmp:
        tmp.write_text("whole")
    assert dest.read_text() == "whole"
    assert [p.name for p in dest.parent.iterdir()] == ["x.ccp4"]


# ------------------------------------------------------------------------------------ sequence, cell

def test_sequence_validation_and_weight(tmp_path):
    seq = Sequence("mk tay\n")
    assert seq.residues == "MKTAY" and len(seq) == 5
    # gemmi's weight of the pentapeptide (residue weights + one water) is near 625 Da
    assert 600 < seq.weight() < 650
    with pytest.raises(CrysError, match="empty"):
        Sequence("   ")
    with pytest.raises(CrysError, match="BZ"):
        Sequence("MKZB")
    fasta = tmp_path / "s.fasta"
    fasta.write_text(">a\nMKT\n>b\nAY*\n")
    assert io.read_sequence(str(fasta)).residues == "MKTAY"


def test_parse_cell_and_spacegroup():
    cell = io.parse_cell("10, 20, 30, 90, 90, 120")
    assert cell.gamma == 120
    for bad in ("10 20 30", "a b c d e f", "10 20 30 90 90 190", "10 -20 30 90 90 90"):
        with pytest.raises(CrysError):
            io.parse_cell(bad)
    assert io.parse_spacegroup("19").hm == "P 21 21 21"
    assert io.parse_spacegroup("P212121").number == 19
    with pytest.raises(CrysError):
        io.parse_spacegroup("Q 9")


def test_read_structure(tmp_path):
    st = blob_structure("P 1", cell=(20, 20, 20, 90, 90, 90), n=1, centre=(1, 2, 3), spread=0.0)
    path = tmp_path / "one.pdb"
    st.write_pdb(str(path))
    back = io.read_structure(path)
    assert back[0].count_atom_sites() == 1
    empty = tmp_path / "empty.pdb"
    empty.write_text("REMARK nothing\nEND\n")
    with pytest.raises(CrysError, match="no atoms"):
        io.read_structure(empty)


# ------------------------------------------------------------------------------------ specs, requests

class _Pred:
    name = "toy"
    version = "0.1"
    summary = "toy"
    inputs = (InputSpec("map", Kind.MAP, "a map", group="data"),
              InputSpec("reflections", Kind.REFLECTIONS, "data", group="data", columns=("F",)),
              InputSpec("cycles", Kind.INT, "cycles", minimum=1, maximum=10),
              InputSpec("mode", Kind.CHOICE, "mode", choices=("a", "b")),
              InputSpec("flag", Kind.BOOL, "flag"))
    outputs = (OutputSpec("x", Kind.SCALAR, "x"),)

    def predict(self, request):
        for i in range(3):
            request.report(i / 3, "step")
        return Prediction(scalars={"x": Scalar(1.0)})


def test_validate_predictor():
    assert validate_predictor(_Pred()) == []

    class Bad:
        name = "has space"
        version = ""
        inputs = [1]
        outputs = ()

    problems = validate_predictor(Bad())
    assert any("'version'" in p for p in problems)
    assert any("'name' may hold" in p for p in problems)
    assert any("'inputs'" in p for p in problems)
    assert any("'predict'" in p for p in problems)
    assert any("'summary'" in p for p in problems)


def test_check_request_and_load_input():
    pred = _Pred()
    with pytest.raises(CrysError, match="needs one of: map, reflections"):
        check_request(pred, {"cycles": 2})
    with pytest.raises(CrysError, match="does not take"):
        check_request(pred, {"map": _map(), "colour": "red"})
    check_request(pred, {"map": _map()})
    specs = {s.name: s for s in pred.inputs}
    assert load_input(specs["cycles"], "3") == 3
    with pytest.raises(CrysError, match="at most 10"):
        load_input(specs["cycles"], "11")
    with pytest.raises(CrysError, match="one of a, b"):
        load_input(specs["mode"], "c")
    assert load_input(specs["flag"], "yes") is True
    with pytest.raises(CrysError, match="yes or no"):
        load_input(specs["flag"], "maybe")
    assert load_input(specs["cycles"], "  ") is None


def test_request_progress_and_cancel():
    seen = []
    token = CancelToken()
    req = Request(inputs={}, progress=lambda f, m: seen.append((f, m)), cancel=token)
    req.report(1.5, "over")
    assert seen == [(1.0, "over")]
    token.cancel()
    with pytest.raises(Cancelled):
        req.report(0.5)
    with pytest.raises(CrysError, match="required"):
        Request().require("map")


def test_prediction_summary_and_table():
    t = Table(["a", "b"], [[1, 0.5], [2, 0.25]])
    assert t.to_tsv() == "a\tb\n1\t0.5\n2\t0.25\n"
    assert t.as_dicts()[1] == {"a": 2, "b": 0.25}
    pred = Prediction(maps={"m": _map()}, scalars={"s": Scalar(2.0, "Å")}, tables={"t": t})
    summary = pred.summary()
    assert summary["maps"]["m"]["grid"] == [6, 8, 10]
    assert summary["maps"]["m"]["spacegroup"] == "C 1 2 1"
    assert summary["scalars"]["s"] == {"value": 2.0, "unit": "Å", "help": ""}
