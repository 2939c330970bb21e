"""Map maths of crysplugins.crystal.maps: structure factors, density, Patterson on one grid."""
from __future__ import annotations

from pathlib import Path

import gemmi
import numpy as np
import pytest

from crysplugins.crystal import maps
from crysplugins.crystal.cells import place
from crysplugins.crystal.standardise import read_structure_file
from crysplugins.datasets.fragments import windows

DATA = Path(__file__).parent / "data" / "dataset"


@pytest.fixture(scope="module")
def fragment():
    st = read_structure_file(DATA / "1EJG.pdb.gz")
    frag = windows(st, "1EJG", 5, 0)[0]
    masses = np.array([gemmi.Element(e).weight for e in frag.elements])
    placed = place(frag.positions, masses, angles=(100.0, 110.0, 90.0), bin_len=4.0)
    return frag, placed


def _structure(frag, placed) -> gemmi.Structure:
    st = gemmi.Structure()
    st.add_model(maps._model_for(placed.positions, frag.elements, 20.0))
    st.cell = placed.cell
    st.spacegroup_hm = "P 1"
    st.setup_cell_images()
    return st


def test_fft_structure_factors_match_direct_summation(fragment):
    frag, placed = fragment
    st = _structure(frag, placed)
    hkl, f_fft = maps.structure_factors(st, 1.5, method="fft")
    rng = np.random.default_rng(0)
    pick = rng.choice(len(hkl), 300, replace=False)
    calc = gemmi.StructureFactorCalculatorX(st.cell)
    f_dir = np.array([calc.calculate_sf_from_model(st[0], [int(x) for x in hkl[i]]) for i in pick])
    err = np.abs(f_fft[pick] - f_dir) / np.abs(f_dir).mean()
    assert np.median(err) < 1e-3 and err.max() < 2e-2
    assert np.corrcoef(np.abs(f_fft[pick]), np.abs(f_dir))[0, 1] > 0.9999


def test_coarse_grid_is_oversampled_internally(fragment):
    """A 0.9 Å output grid (d_min 2.25, rate 2.5) still gives accurate F (atoms sampled on a finer grid)."""
    frag, placed = fragment
    cell = placed.cell
    shape = maps.grid_shape(cell, 0.9, multiple=2)
    f = maps.fft_structure_factors((placed.positions, frag.elements), cell, shape, 2.25)
    hkl, vals = maps.crystallographic_f(f, cell, shape, 2.25)
    st = _structure(frag, placed)
    calc = gemmi.StructureFactorCalculatorX(cell)
    direct = np.array([calc.calculate_sf_from_model(st[0], [int(x) for x in r]) for r in hkl[:200]])
    assert np.abs(vals[:200] - direct).max() / np.abs(direct).mean() < 2e-2


def test_patterson_is_autocorrelation_of_density(fragment):
    frag, placed = fragment
    cell = placed.cell
    shape = tuple(int(round(x / 0.5)) for x in (cell.a, cell.b, cell.c))
    f = maps.fft_structure_factors((placed.positions, frag.elements), cell, shape, 1.5)
    density, patterson = maps.maps_from_f(f, cell, shape)
    rho = density.astype(np.float64)
    # direct real-space autocorrelation A(u) = (V/N) sum_x rho(x) rho(x+u) at 200 random shifts u
    rng = np.random.default_rng(1)
    shifts = [tuple(int(rng.integers(n)) for n in shape) for _ in range(200)] + [(0, 0, 0)]
    auto = np.array([(rho * np.roll(rho, [-s for s in u], axis=(0, 1, 2))).sum() for u in shifts])
    auto *= cell.volume / rho.size
    pat = np.array([patterson[u] for u in shifts])
    assert np.corrcoef(auto, pat)[0, 1] > 0.999
    assert np.allclose(auto, pat, rtol=1e-3, atol=1e-3 * abs(pat).max())


def test_patterson_map_from_mtz_amplitudes(fragment, tmp_path):
    from crysplugins.crystal.io import read_mtz
    from crysplugins.datasets.build import write_test_mtz

    frag, placed = fragment
    cell = placed.cell
    shape = tuple(int(round(x / 0.5)) for x in (cell.a, cell.b, cell.c))
    f = maps.fft_structure_factors((placed.positions, frag.elements), cell, shape, 1.5)
    _, patterson = maps.maps_from_f(f, cell, shape)
    write_test_mtz(tmp_path, "x", f, cell, shape, 1.5)
    refl = read_mtz(tmp_path / "x_amplitudes.mtz", need=("F",))
    pmap = maps.patterson_map(refl, grid_shape_=shape)
    arr = np.array(pmap.grid, copy=False)
    assert np.corrcoef(arr.ravel(), patterson.ravel())[0, 1] > 0.9999
    # the phases file reproduces the density: |F| e^{i phi} back to the map
    ph = read_mtz(tmp_path / "x_phases.mtz", need=("F", "PHI"))
    data = np.array(ph.mtz, copy=False)
    hkl, amp, phi = data[:, :3].astype(int), data[:, 3], np.radians(data[:, 4])
    hkl2, vals = maps.crystallographic_f(f, cell, shape, 1.5)
    lookup = {tuple(r): v for r, v in zip(hkl2, vals)}
    got = amp * np.exp(1j * phi)
    want = np.array([lookup.get(tuple(r), lookup.get(tuple(-r), np.nan + 0j)) for r in hkl])
    want = np.where(np.array([tuple(r) in lookup for r in hkl]), want, np.conj(want))
    assert np.nanmax(np.abs(got - want)) / np.abs(want).mean() < 1e-3


def test_density_map_of_structure_and_resolution_mask():
    cell = gemmi.UnitCell(10, 12, 14, 90, 100, 90)
    mask = maps.resolution_mask(cell, (20, 24, 28), 1.5)
    inv_d2 = maps.reciprocal_inv_d2(cell, (20, 24, 28))
    assert mask.sum() > 0 and inv_d2[mask].max() <= 1 / 1.5**2 + 1e-9
    assert not mask[0, 0, 0]
    assert abs(inv_d2[1, 0, 0] - cell.calculate_d([1, 0, 0]) ** -2) < 1e-12
    assert abs(inv_d2[3, -2, 5] - cell.calculate_d([3, -2, 5]) ** -2) < 1e-12


def test_patterson_map_expands_symmetry_of_a_non_p1_mtz(fragment):
    """Amplitudes of a P 21 21 21 crystal given as its asymmetric unit give the same Patterson as P1."""
    from crysplugins.crystal.io import make_mtz

    frag, _ = fragment
    cell = gemmi.UnitCell(24, 28, 32, 90, 90, 90)
    sg = gemmi.SpaceGroup("P 21 21 21")
    frac0 = frag.positions @ np.array(cell.frac.mat.tolist()).T
    frac0 = frac0 - frac0.mean(0) + 0.25
    copies = []
    for op in sg.operations():
        copies.append(np.array([op.apply_to_xyz(list(f)) for f in frac0]))
    pos = np.concatenate(copies) @ np.array(cell.orth.mat.tolist()).T
    elements = list(frag.elements) * len(copies)
    shape = maps.grid_shape(cell, 0.5, multiple=2)
    f = maps.fft_structure_factors((pos, elements), cell, shape, 2.0)
    _, p1_patterson = maps.maps_from_f(f, cell, shape)
    hkl, vals = maps.crystallographic_f(f, cell, shape, 2.0)
    asu = gemmi.ReciprocalAsu(sg)
    keep = np.array([asu.is_in([int(x) for x in r]) for r in hkl])
    mtz = make_mtz(cell, sg, hkl[keep], {"F": ("F", np.abs(vals[keep]))})
    pmap = maps.patterson_map(mtz, grid_shape_=shape)
    arr = np.array(pmap.grid, copy=False)
    assert keep.sum() < 0.3 * len(hkl)
    assert np.corrcoef(arr.ravel(), p1_patterson.ravel())[0, 1] > 0.999


def test_centre_density_puts_a_shifted_fragment_back_at_the_cell_centre(fragment):
    """The training data put the centre of mass at the cell centre (appendix B); a map displaced by a few
    tenths of an Å (any fraction of a voxel) is moved back, and inverting the centred map keeps it there."""
    frag, placed = fragment
    rho = maps.density_map(_structure(frag, placed), 1.5, shape=maps.grid_shape(placed.cell, 0.5)).array
    rho = np.asarray(rho, dtype=np.float64)
    assert np.abs(maps.density_centroid(rho)).max() < 0.01  # the placed fragment is centred already
    t = np.array([0.031, -0.047, 0.018])
    moved = maps.shift_grid(rho, t)
    assert np.corrcoef(moved.ravel(), rho.ravel())[0, 1] < 0.9  # a real displacement
    assert np.allclose(maps.shift_grid(moved, -t), rho, atol=1e-6 * np.abs(rho).max())
    back, shift = maps.centre_density(moved)
    assert np.allclose(shift, -t, atol=0.005)
    assert np.corrcoef(back.ravel(), rho.ravel())[0, 1] > 0.99
    assert np.abs(maps.density_centroid(maps.invert_grid(back))).max() < 0.005
