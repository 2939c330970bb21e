"""Generate the small GUI test fixtures in this folder (run from anywhere; deterministic).

* ``gui_tiny.ccp4``: a 10 x 12 x 14 whole-cell map, cell 15 18 21 Å 90 100 90°, P 1, eight Gaussian
  "atoms" (σ = 1.2 Å) at fixed fractional positions (values in arbitrary units);
* ``gui_tiny.mtz``: F, PHI (degrees) of that map to 3.2 Å, from gemmi ``transform_map_to_f_phi``;
* ``gui_tiny.fasta``: a 24-residue sequence (one copy fits the tiny cell with Vm about 2 Å³/Da).
"""
from __future__ import annotations

from pathlib import Path

import gemmi
import numpy as np

HERE = Path(__file__).resolve().parent
CELL = (15.0, 18.0, 21.0, 90.0, 100.0, 90.0)
SHAPE = (10, 12, 14)


def tiny_map_array() -> np.ndarray:
    rng = np.random.default_rng(7)
    cell = gemmi.UnitCell(*CELL)
    centres = rng.random((8, 3))
    grid = np.stack(np.meshgrid(*[np.arange(n) / n for n in SHAPE], indexing="ij"), axis=-1)
    frac_matrix = np.array(cell.orth.mat.tolist())
    rho = np.zeros(SHAPE, dtype=np.float64)
    for c in centres:
        d = grid - c
        d -= np.round(d)  # periodic nearest image (in fractional units)
        xyz = d @ frac_matrix.T
        rho += np.exp(-(xyz ** 2).sum(-1) / (2 * 1.2 ** 2))
    return rho.astype(np.float32)


def main() -> None:
    arr = tiny_map_array()
    grid = gemmi.FloatGrid(arr, gemmi.UnitCell(*CELL))
    grid.spacegroup = gemmi.SpaceGroup("P 1")
    ccp4 = gemmi.Ccp4Map()
    ccp4.grid = grid
    ccp4.update_ccp4_header()
    ccp4.write_ccp4_map(str(HERE / "gui_tiny.ccp4"))

    sf = gemmi.transform_map_to_f_phi(grid, half_l=True)
    data = sf.prepare_asu_data(dmin=3.2, with_000=False, with_sys_abs=False)
    values = np.asarray(data.value_array)
    mtz = gemmi.Mtz(with_base=True)
    mtz.cell = grid.unit_cell
    mtz.spacegroup = grid.spacegroup
    mtz.add_dataset("tiny")
    mtz.add_column("F", "F")
    mtz.add_column("PHI", "P")
    hkl = np.asarray(data.miller_array, dtype=np.float32)
    mtz.set_data(np.hstack([hkl, np.abs(values)[:, None], np.degrees(np.angle(values))[:, None]]).astype(np.float32))
    mtz.update_reso()
    mtz.write_to_file(str(HERE / "gui_tiny.mtz"))

    (HERE / "gui_tiny.fasta").write_text(">tiny test peptide, 24 residues\nMISLIAALAVDRVIGMENAMPWNL\n")


if __name__ == "__main__":
    main()
