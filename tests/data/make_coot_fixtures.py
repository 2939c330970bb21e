"""Make the small fixtures of the Coot script tests (run: python tests/data/make_coot_fixtures.py).

* ``coot_map.ccp4``: P 1, cell 18 x 18 x 18 Å, 90°, grid 12 x 12 x 12 (1.5 Å spacing), the electron
  density (e/Å³, gemmi DensityCalculatorX, B = 20 Å²) of eight atoms at fixed positions.  About 8 KB.
* ``coot_data.mtz``: the same atoms' structure factors to 4 Å: FP, SIGFP (5 % of FP) and the map
  coefficients FWT, PHWT (= FP, PHI calculated).  About 6 KB.

Deterministic: no random numbers.
"""
from __future__ import annotations

from pathlib import Path

import gemmi
import numpy as np

HERE = Path(__file__).resolve().parent
CELL = (18.0, 18.0, 18.0, 90.0, 90.0, 90.0)
ATOMS = [("C", (3.0, 4.0, 5.0)), ("N", (4.3, 4.5, 5.2)), ("C", (5.5, 3.8, 5.9)), ("O", (6.1, 4.6, 6.8)),
         ("C", (11.0, 12.0, 9.0)), ("S", (12.4, 12.9, 9.6)), ("C", (13.0, 10.5, 14.0)), ("O", (14.2, 10.9, 14.6))]


def structure() -> gemmi.Structure:
    st = gemmi.Structure()
    st.cell = gemmi.UnitCell(*CELL)
    st.spacegroup_hm = "P 1"
    model = gemmi.Model("1")
    chain = gemmi.Chain("A")
    for i, (element, pos) in enumerate(ATOMS):
        res = gemmi.Residue()
        res.name, res.seqid = "UNK", gemmi.SeqId(i + 1, " ")
        atom = gemmi.Atom()
        atom.name, atom.element, atom.pos, atom.b_iso, atom.occ = element, gemmi.Element(element), gemmi.Position(*pos), 20.0, 1.0
        res.add_atom(atom)
        chain.add_residue(res)
    model.add_chain(chain)
    st.add_model(model)
    st.setup_entities()
    return st


def make_map(path: Path) -> None:
    st = structure()
    dc = gemmi.DensityCalculatorX()
    dc.d_min = 3.0
    dc.grid.setup_from(st)
    dc.put_model_density_on_grid(st[0])
    # resample onto a 12^3 grid (1.5 A = Nyquist for 3 A) through the structure factors
    data = gemmi.transform_map_to_f_phi(dc.grid, half_l=True).prepare_asu_data(dmin=3.0, with_000=True)
    small = data.transform_f_phi_to_map(exact_size=[12, 12, 12])
    ccp4 = gemmi.Ccp4Map()
    ccp4.grid = gemmi.FloatGrid(np.array(small, copy=True).astype(np.float32), st.cell, gemmi.SpaceGroup("P 1"))
    ccp4.update_ccp4_header()
    ccp4.write_ccp4_map(str(path))


def make_mtz(path: Path) -> None:
    st = structure()
    dc = gemmi.DensityCalculatorX()
    dc.d_min = 4.0
    dc.grid.setup_from(st)
    dc.put_model_density_on_grid(st[0])
    grid = gemmi.transform_map_to_f_phi(dc.grid, half_l=True)
    data = grid.prepare_asu_data(dmin=4.0, with_000=False)
    hkl = np.array(data.miller_array, dtype=np.int32)
    f = np.abs(data.value_array).astype(np.float32)
    phi = np.degrees(np.angle(data.value_array)).astype(np.float32)
    mtz = gemmi.Mtz(with_base=True)
    mtz.spacegroup = gemmi.SpaceGroup("P 1")
    mtz.set_cell_for_all(st.cell)
    mtz.add_dataset("coot-test")
    for label, typ in (("FP", "F"), ("SIGFP", "Q"), ("FWT", "F"), ("PHWT", "P")):
        mtz.add_column(label, typ)
    mtz.set_data(np.column_stack([hkl.astype(np.float32), f, 0.05 * f, f, phi]))
    mtz.update_reso()
    mtz.write_to_file(str(path))


if __name__ == "__main__":
    make_map(HERE / "coot_map.ccp4")
    make_mtz(HERE / "coot_data.mtz")
    for name in ("coot_map.ccp4", "coot_data.mtz"):
        print(name, (HERE / name).stat().st_size, "bytes")
