"""Test helpers shared by several test modules (registered by conftest.py as ``crysplugins_test_support``;
test modules cannot import each other under pytest's importlib import mode)."""
from __future__ import annotations

from pathlib import Path

import gemmi
import numpy as np

#: the dataset-building fixture structures
DATASET_STRUCTURES = Path(__file__).parent / "data" / "dataset"


def hand_fixture(path: Path) -> tuple[list[np.ndarray], dict[str, np.ndarray]]:
    """The maps of a hand fixture (tests/data/make_hand_fixtures.py: flat float16 maps and their shapes), as
    float64 arrays, and its other arrays (cells, n_residues, d_min, ids, sequences)."""
    with np.load(path) as z:
        sizes = np.prod(z["shapes"], axis=1)
        flat = np.split(z["flat"].astype(np.float64), np.cumsum(sizes)[:-1])
        maps = [m.reshape(s) for m, s in zip(flat, z["shapes"])]
        return maps, {k: z[k] for k in z.files if k not in ("flat", "shapes")}


def blob_structure(sg: str = "P 21 21 21", cell=(30.0, 36.0, 42.0, 90, 90, 90), n: int = 60,
                   seed: int = 0, centre=(7.0, 8.0, 9.0), spread: float = 3.0,
                   rng: np.random.Generator | None = None, b_iso: float = 20.0) -> gemmi.Structure:
    """A compact cluster of carbon atoms (a pretend protein) in a crystal: ``n`` CA atoms drawn around
    ``centre`` (Å) with standard deviation ``spread`` (Å), from ``rng`` (else a generator seeded ``seed``),
    each with B factor ``b_iso`` (Å²); ``spread=0`` puts every atom exactly at ``centre``."""
    rng = np.random.default_rng(seed) if rng is None else rng
    st = gemmi.Structure()
    st.cell = gemmi.UnitCell(*cell)
    st.spacegroup_hm = sg
    model, chain = gemmi.Model("1"), gemmi.Chain("A")
    centre = np.asarray(centre, dtype=float)
    for i in range(n):
        res = gemmi.Residue()
        res.name, res.seqid = "GLY", gemmi.SeqId(i + 1, " ")
        atom = gemmi.Atom()
        atom.name, atom.element = "CA", gemmi.Element("C")
        atom.pos = gemmi.Position(*(centre + rng.normal(0, spread, 3)))
        atom.occ, atom.b_iso = 1.0, b_iso
        res.add_atom(atom)
        chain.add_residue(res)
    model.add_chain(chain)
    st.add_model(model)
    st.setup_entities()
    return st


def tiny_recycling_dataset(out: Path) -> Path:
    """Build at ``out`` the small dataset the recycling tests train and predict on: two-residue fragments of
    the fixture structures at 2 Å (16³ grids at most, 8 Å partial boxes, 10 examples, 30% test)."""
    from crysplugins.datasets.build import BuildConfig, build

    build(BuildConfig(structures=str(DATASET_STRUCTURES), out=str(out), n_residues=2, overlap=1, d_min=2.0,
                      rate=2.5, max_grid=16, test_fraction=0.3, max_examples=10, shard_size=4, progress=False,
                      partial_box=8))
    return out


def fragment_structure_factors(d_min: float = 2.0) -> tuple[gemmi.Structure, np.ndarray, np.ndarray]:
    """(structure, hkl, F) of the 5-residue fixture fragment in a 16 × 19 × 23 Å P 21 21 21 cell: the ASU
    reflections to ``d_min`` Å, F(000) left out."""
    st = gemmi.read_structure(str(Path(__file__).parent / "data" / "frag5.pdb"))
    st.cell = gemmi.UnitCell(16.0, 19.0, 23.0, 90, 90, 90)
    st.spacegroup_hm = "P 21 21 21"
    st.setup_entities()
    dc = gemmi.DensityCalculatorX()
    dc.d_min = d_min
    dc.set_grid_cell_and_spacegroup(st)
    dc.put_model_density_on_grid(st[0])
    asu = gemmi.transform_map_to_f_phi(dc.grid, half_l=True).prepare_asu_data(dmin=d_min)
    hkl, f = np.asarray(asu.miller_array), np.asarray(asu.value_array)
    keep = ~np.all(hkl == 0, axis=1)
    return st, hkl[keep], f[keep]


def write_phasing_mtz(path: Path) -> None:
    """The fixture fragment in P 21 21 21 as an experimental phasing MTZ: FP/SIGFP and PHIB/FOM with phases
    ~40° off (normal errors, seed 3), FOM 0.6."""
    st, hkl, f = fragment_structure_factors()
    phib = np.degrees(np.angle(f)) + np.random.default_rng(3).normal(0.0, 40.0, len(f))
    mtz = gemmi.Mtz(with_base=True)
    mtz.cell, mtz.spacegroup = st.cell, gemmi.SpaceGroup("P 21 21 21")
    mtz.add_dataset("d")
    for label, kind in (("FP", "F"), ("SIGFP", "Q"), ("PHIB", "P"), ("FOM", "W")):
        mtz.add_column(label, kind)
    mtz.set_data(np.column_stack([hkl, np.abs(f), 0.02 * np.abs(f), phib, np.full(len(f), 0.6)]).astype(np.float32))
    mtz.write_to_file(str(path))
