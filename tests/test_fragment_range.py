"""Fragments of any length 2-15 at 1.5-2.5 Å: mixed-length datasets, padded sequences, placement.

Paper 000 trains on 15-residue fragments (table 1) and on variable resolution 1.6-2.25 Å (table 2); one
length-agnostic model needs batches that mix lengths (sequences right-padded with -1 and masked out of
attention) and a placement rule that works when a long fragment nearly fills its cell.
"""
from __future__ import annotations

import json
from pathlib import Path

import gemmi
import numpy as np
import pytest

from crysplugins.cli import main
from crysplugins.crystal import maps
from crysplugins.crystal.cells import place
from crysplugins.crystal.standardise import read_structure_file
from crysplugins.datasets.fragments import windows
from crysplugins.datasets.store import open_dataset

DATA = Path(__file__).parent / "data"


def test_padding_residues_do_not_change_the_prediction():
    torch = pytest.importorskip("torch")
    from crysplugins.training.nets.reccrysformer import RecCrysFormer

    torch.manual_seed(0)
    net = RecCrysFormer({"d_t": 32, "heads": 2, "depth": 2, "d_ff": 64, "attention": "exact", "partial_box": 8,
                         "partial_channels": 2, "conv_channels": 4, "max_residues": 15, "patch": 8,
                         "max_patches_per_axis": 4, "decoder_channels": 4})
    net.eval()
    patterson = torch.randn(2, 1, 16, 16, 24)
    padded = torch.tensor([[3, 5, 7, -1, -1], [1, 2, 3, 4, 5]])
    with torch.no_grad():
        both = net(patterson, padded)
        alone = net(patterson[:1], padded[:1, :3])
        other = net(patterson[:1], torch.tensor([[3, 5, 7, 0, 19]]))
    assert torch.allclose(both[0], alone[0], atol=1e-5)
    assert not torch.allclose(alone[0], other[0], atol=1e-4)  # the residues that are there do count


def test_dataset_build_mixes_lengths_with_padded_sequences(tmp_path):
    out = tmp_path / "mixed"
    args = ["dataset", "build", "--structures", str(DATA / "dataset"), "--out", str(out), "--lengths", "2", "4",
            "--d-min-range", "1.5", "2.5", "--rate-range", "2.305", "2.745", "--max-examples", "60",
            "--patterson-norm", "per_map", "--test-fraction", "0.3", "--seed", "1", "--quiet"]
    assert main(args) == 0
    ds = open_dataset(out)
    assert ds.meta["n_residues"] == [2, 4] and ds.meta["normalisation"]["patterson"]["per_map"] == "max"
    lengths, d_mins = set(), []
    for split in ("train", "test"):
        for shard in ds.shards(split):
            arrays = shard.load()
            seq = arrays["sequence_index"]
            assert seq.shape[1] == 4
            n = (seq >= 0).sum(axis=1)
            assert all((seq[i, :k] >= 0).all() and (seq[i, k:] == -1).all() for i, k in enumerate(n))
            lengths.update(n.tolist())
            flat = arrays["patterson"].reshape(len(seq), -1).astype(np.float32)
            assert np.allclose(flat.max(axis=1), 1.0, atol=1e-3)  # each map scaled by its origin peak
            d_mins += arrays["d_min"].tolist()
    assert lengths == {2, 3, 4}
    assert 1.5 <= min(d_mins) < max(d_mins) <= 2.5
    assert all(r["id"].endswith(f"_L{len(r['sequence'])}") for r in ds.examples())


def _density(frag, placed, d_min: float) -> np.ndarray:
    st = gemmi.Structure()
    st.add_model(maps._model_for(placed.positions, frag.elements, 20.0))
    st.cell = placed.cell
    st.spacegroup_hm = "P 1"
    st.setup_cell_images()
    shape = maps.grid_shape(placed.cell, d_min / 2.5, 8)
    return np.asarray(maps.density_map(st, d_min, shape=shape).array, dtype=np.float64)


@pytest.mark.parametrize("length", [5, 12])
def test_placement_in_a_cell_the_fragment_nearly_fills(length):
    """A fragment in the tightest cell its contacts allow, moved by large fractions of the cell (so it
    straddles the boundary), is put back where the training data put its centre of mass."""
    st = read_structure_file(DATA / "dataset" / "1RX2.pdb.gz")
    frag = windows(st, "1RX2", length, length - 1)[0]
    masses = np.array([gemmi.Element(e).weight for e in frag.elements])
    placed = place(frag.positions, masses, angles=(90.0, 110.0, 100.0), bin_len=1.0)
    rho = _density(frag, placed, 2.0)
    extent = np.ptp(np.array([placed.cell.fractionalize(gemmi.Position(*p)).tolist() for p in placed.positions]),
                    axis=0)
    assert extent.max() > 0.6  # the fragment spans most of the cell along at least one axis
    for t in ([0.41, -0.37, 0.45], [-0.48, 0.22, -0.3]):
        moved = maps.shift_grid(rho, t)
        back, shift = maps.centre_density(moved, cell=placed.cell)
        assert np.corrcoef(back.ravel(), rho.ravel())[0, 1] > 0.97
        inverted, _ = maps.centre_density(maps.invert_grid(moved), cell=placed.cell)
        assert np.corrcoef(inverted.ravel(), maps.invert_grid(rho).ravel())[0, 1] > 0.97


def test_the_narrowest_model_that_covers_the_fragment_is_chosen(tmp_path, monkeypatch):
    from crysplugins.errors import CrysError
    from crysplugins.runtime.models import find_card
    from crysplugins.runtime.reccrysformer import model_for

    card = json.loads(find_card("reccrysformer_dipeptide").path.read_text())
    card.update(name="general_test", n_residues=[2, 15])
    card["grid"] = {**card["grid"], "d_min": [1.5, 2.5], "spacing": None}
    card.pop("recycled_model", None)
    (tmp_path / "general_test.json").write_text(json.dumps(card))
    monkeypatch.setenv("CRYSPLUGINS_MODELS", str(tmp_path))
    assert model_for(2, 1.5) == "reccrysformer_dipeptide"  # the specialist where it covers the input
    assert model_for(2, 2.0) == "general_test"
    assert model_for(12, None) == "general_test"
    with pytest.raises(CrysError, match="No installed patterson-density model covers a fragment of 16 residues"):
        model_for(16, 1.5)


def test_export_pipeline_settings_are_checked():
    pytest.importorskip("torch")
    from crysplugins.errors import CrysError
    from crysplugins.training.export import parse_pipeline

    assert parse_pipeline(["final_dm_cycles=200", "default_output=refined"]) == \
        {"final_dm_cycles": 200, "default_output": "refined"}
    for bad in (["cycles=3"], ["final_dm_cycles=many"], ["default_cycles=-1"], ["default_output=best"]):
        with pytest.raises(CrysError, match="--pipeline"):
            parse_pipeline(bad)


def _install_general_model(folder: Path) -> None:
    """A card 'general_test' over 2-15 residues and 1.5-2.5 Å (the dipeptide network's weights) in ``folder``."""
    from crysplugins.runtime.models import find_card

    dipeptide = find_card("reccrysformer_dipeptide").path
    card = json.loads(dipeptide.read_text())
    card.update(name="general_test", n_residues=[2, 15])
    card["grid"] = {**card["grid"], "d_min": [1.5, 2.5], "sampling_rate": [2.305, 2.745], "spacing": None,
                    "max_grid": 64, "multiple": 8}
    card.pop("recycled_model", None)
    (folder / "general_test.json").write_text(json.dumps(card))
    (folder / card["onnx"]).symlink_to(dipeptide.with_suffix(".onnx"))


def test_a_cell_too_large_for_the_grid_at_its_resolution_runs_coarser(tmp_path, monkeypatch):
    """A 15-residue cell at 1.5 Å needs more grid points than the model takes: the network then reads
    the data to the finest resolution whose grid fits, and says so, instead of refusing."""
    from crysplugins.interface import ObservedAmplitudes
    from crysplugins.runtime.reccrysformer import RecCrysFormerPipeline

    _install_general_model(tmp_path)
    monkeypatch.setenv("CRYSPLUGINS_MODELS", str(tmp_path))
    pipeline = RecCrysFormerPipeline("general_test")
    cell = gemmi.UnitCell(24.0, 24.0, 38.4, 110.0, 90.0, 90.0)
    hkl = np.array([h for h in np.ndindex(33, 33, 53) if any(h)]) - [16, 16, 26]
    hkl = hkl[np.array([cell.calculate_d(h) >= 1.5 for h in hkl.tolist()])]
    observed = ObservedAmplitudes(cell, gemmi.SpaceGroup("P 1"), hkl, np.ones(len(hkl)))
    assert max(maps.grid_shape(cell, pipeline.spacing_for(1.5), 8)) > 64
    messages: list[str] = []
    used = pipeline.observed_for_model(observed, messages)
    assert 1.5 < used.d().min() < 1.6
    assert max(maps.grid_shape(cell, pipeline.spacing_for(float(used.d().min())), 8)) <= 64
    assert any("more than the model's 64 grid points" in m for m in messages)
    small = gemmi.UnitCell(16.0, 16.0, 20.0, 90.0, 90.0, 90.0)  # fits at 1.5 Å: nothing is cut
    keep = np.array([small.calculate_d(h) >= 1.5 for h in hkl.tolist()])
    messages = []
    assert pipeline.observed_for_model(ObservedAmplitudes(small, gemmi.SpaceGroup("P 1"), hkl[keep],
                                                          np.ones(keep.sum())), messages).d().min() < 1.51
    assert not messages


def test_a_cell_too_large_for_the_specialist_goes_to_the_general_model(tmp_path, monkeypatch):
    from crysplugins.runtime.reccrysformer import model_for

    _install_general_model(tmp_path)
    monkeypatch.setenv("CRYSPLUGINS_MODELS", str(tmp_path))
    small, large = gemmi.UnitCell(12, 12, 14, 90, 90, 90), gemmi.UnitCell(20, 22, 30, 90, 90, 90)
    assert model_for(2, 1.5, small) == "reccrysformer_dipeptide"
    assert model_for(2, 1.5, large) == "general_test"
