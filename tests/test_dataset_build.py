"""End-to-end `crysplugins dataset build` on the small structures in tests/data/dataset/."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from crysplugins.cli import main
from crysplugins.crystal.standardise import read_structure_file
from crysplugins.datasets.fragments import windows
from crysplugins.datasets.store import open_dataset
from crysplugins.errors import CrysError

DATA = Path(__file__).parent / "data" / "dataset"
ARGS = ["--residues", "2", "--overlap", "5", "--d-min", "1.5", "--rate", "3.0", "--test-fraction", "0.3",
        "--seed", "1", "--quiet"]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("ds") / "di"
    assert main(["dataset", "build", "--structures", str(DATA), "--out", str(out), *ARGS]) == 0
    return out


def test_fragment_filters_and_standardisation():
    st = read_structure_file(DATA / "1RX2.pdb.gz")  # MET 1 stored as MSE with SE
    res = st[0][0][0]
    assert res.name == "MET" and "SD" in [a.name for a in res] and "SE" not in [a.name for a in res]
    frags = windows(st, "1RX2", 2, 5)
    assert frags[0].sequence.startswith("M") and frags[0].id == f"1RX2_{frags[0].entity}_0"
    from collections import Counter

    for name, reason in (("1AJJ", "chain_break"), ("1LFM", "missing_atoms")):
        drops = Counter()
        windows(read_structure_file(DATA / f"{name}.pdb.gz"), name, 2, 5, drops)
        assert drops[reason] >= 1, (name, drops)
    # altlocs: only the first conformer, no hydrogens
    st = read_structure_file(DATA / "2PCB.pdb.gz")
    r = st[0][0][5]
    assert all(a.altloc in ("\0", "A") for a in r) and not any(a.is_hydrogen() for a in r)
    assert len({a.name for a in r}) == len(r)


def test_corrupt_file_is_skipped_and_counted(built, capsys):
    meta = json.loads((built / "meta.json").read_text())
    bad = meta["build"]["unreadable_files"]
    assert len(bad) == 1 and bad[0]["file"].endswith("corrupt.cif.gz")
    assert meta["build"]["structure_files"] == 6


def test_no_family_on_both_sides(built):
    ds = open_dataset(built)
    fam = {s: {r["family"] for r in ds.examples(s)} for s in ("train", "test")}
    assert fam["train"] and fam["test"] and not fam["train"] & fam["test"]
    assert set(ds.meta["families"]["train"]) == fam["train"] and set(ds.meta["families"]["test"]) == fam["test"]
    by_source = {}
    for r in ds.index:
        by_source.setdefault(r["source"], set()).add(r["split"])
    assert all(len(v) == 1 for v in by_source.values())
    # 1LFM and 2PCB share family F03 in the manifest: same side
    assert by_source["1LFM.pdb.gz"] == by_source["2PCB.pdb.gz"]


def test_reader_shards_and_index_agree(built):
    ds = open_dataset(built)
    meta = ds.meta
    assert meta["format"] == "crysplugins-patterson-v1" and meta["n_residues"] == 2
    ids = [r["id"] for r in ds.index]
    assert len(ids) == len(set(ids)) == meta["splits"]["train"] + meta["splits"]["test"]
    seen = 0
    pmax = 0.0
    for split in ("train", "test"):
        for shard in ds.shards(split):
            z = shard.load()
            n = len(z["ids"])
            seen += n
            assert z["patterson"].shape == (n, *shard.shape) == z["density"].shape
            assert z["patterson"].dtype == np.float16
            assert np.abs(z["patterson"]).max() <= 1 and np.abs(z["density"]).max() <= 1
            assert z["sequence_index"].shape == (n, 2) and z["cell"].shape == (n, 6)
            rows = {r["id"]: r for r in ds.index if r["shard"] == shard.path.name}
            for i, eid in enumerate(z["ids"]):
                r = rows[str(eid)]
                assert r["row"] == i
                assert "".join(meta["residue_types"][k] for k in z["sequence_index"][i]) == r["sequence"]
                assert np.allclose(z["cell"][i], [r["a"], r["b"], r["c"], r["alpha"], r["beta"], r["gamma"]],
                                   atol=1e-3)
                assert np.allclose(np.array(shard.shape) * 0.5, z["cell"][i][:3], atol=1e-3)
            if split == "train":
                pmax = max(pmax, float(np.abs(z["patterson"]).max()))
    assert seen == len(ids)
    assert pmax == 1.0  # normalisation constants come from the train split
    boxes = ds.partial_boxes()
    assert boxes.shape == (20, 24, 24, 24) and np.abs(boxes).max() <= 1
    # Trp (14 heavy atoms) has more density than Gly (4); maps have mean 0 (F000 omitted)
    w, g = (boxes[meta["residue_types"].index(c)] for c in "WG")
    assert (w**2).sum() > 2 * (g**2).sum() and abs(w.mean()) < 1e-3


def test_test_mtz_files(built):
    from crysplugins.crystal.io import read_mtz

    ds = open_dataset(built)
    test = ds.examples("test")
    assert test
    amp, pha = ds.test_mtz(test[0]["id"])
    a = read_mtz(amp, need=("F", "SIGF"))
    p = read_mtz(pha, need=("F", "PHI"))
    assert a.mtz.spacegroup.hm == "P 1" and abs(a.mtz.cell.a - test[0]["a"]) < 1e-3
    assert a.mtz.nreflections == p.mtz.nreflections > 50
    assert abs(a.mtz.resolution_high() - 1.5) < 0.1
    assert all(ds.test_mtz(r["id"])[0].exists() for r in test)


def test_sharded_build_resumes_and_matches(built, tmp_path):
    out = tmp_path / "sharded"
    base = ["dataset", "build", "--structures", str(DATA), "--out", str(out), *ARGS]
    assert main(base + ["--shard", "0/2"]) == 0
    assert not (out / "meta.json").exists() and (out / "plan.json").exists()
    assert main(base + ["--shard", "1/2", "--workers", "2"]) == 0
    a, b = open_dataset(built), open_dataset(out)
    assert [r["id"] for r in a.index] == [r["id"] for r in b.index]
    assert a.meta["normalisation"] == b.meta["normalisation"]
    za, zb = a.shards("train")[0].load(), b.shards("train")[0].load()
    assert np.array_equal(za["patterson"], zb["patterson"]) and np.array_equal(za["density"], zb["density"])
    # a finished dataset is not rebuilt; other settings in the same folder are refused
    assert main(base) == 0
    assert main(["dataset", "build", "--structures", str(DATA), "--out", str(out), "--residues", "3",
                 "--quiet"]) != 0


def test_fixed_cell_mode(tmp_path):
    out = tmp_path / "fixed"
    assert main(["dataset", "build", "--structures", str(DATA), "--out", str(out), "--residues", "2",
                 "--fixed-cell", "16", "16", "16", "90", "90", "90", "--no-test-mtz", "--quiet",
                 "--dtype", "float32"]) == 0
    ds = open_dataset(out)
    assert {(r["nu"], r["nv"], r["nw"]) for r in ds.index} == {(32, 32, 32)}
    assert ds.meta["fixed_cell"] == [16, 16, 16, 90, 90, 90]
    assert ds.shards("train")[0].load()["density"].dtype == np.float32
    assert not (out / "test_mtz").exists() or not any((out / "test_mtz").iterdir())


def test_bad_input_is_one_clear_error(tmp_path, capsys):
    assert main(["dataset", "build", "--structures", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) != 0
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["dataset", "build", "--structures", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) != 0
    assert "No PDB/mmCIF files" in capsys.readouterr().err
    with pytest.raises(CrysError):
        open_dataset(tmp_path / "empty")


def test_without_manifest_each_structure_is_its_own_family(tmp_path):
    src = tmp_path / "mirror"
    src.mkdir()
    for p in DATA.glob("*.pdb.gz"):
        shutil.copy(p, src / p.name)
    out = tmp_path / "ds"
    assert main(["dataset", "build", "--structures", str(src), "--out", str(out), "--residues", "3",
                 "--test-fraction", "0.3", "--no-test-mtz", "--quiet"]) == 0
    ds = open_dataset(out)
    fam = {s: {r["family"] for r in ds.examples(s)} for s in ("train", "test")}
    assert fam["test"] and not fam["train"] & fam["test"]
    assert all(r["family"] == r["id"].split("_")[0] for r in ds.index)
