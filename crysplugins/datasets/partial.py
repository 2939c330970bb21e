"""Partial-structure densities: one box per standard amino acid (paper 000, section on partial structures).

Each residue type's ideal coordinates (Coot monomer library, shipped in ``crysplugins/data/monomers.json``;
heavy atoms only, B = 20 Å^2) are centred on their centre of mass in a cubic P1 cell of ``box`` voxels
at ``spacing`` Å, and the resolution-limited density (e/Å^3, F(000) omitted, structure factors to
``d_min``, default 3 x spacing = rate 3) is computed with the same code as the dataset maps
(:mod:`crysplugins.crystal.maps`).  No torch: the inference plugin uses this too.
"""
from __future__ import annotations

import gemmi
import numpy as np

from crysplugins.crystal.maps import fft_structure_factors, maps_from_f
from crysplugins.crystal.standardise import B_ISO, RESIDUE_TYPES, monomers


def residue_boxes(spacing: float, box: int = 24, d_min: float | None = None,
                  residue_types: str = RESIDUE_TYPES) -> np.ndarray:
    """(20, box, box, box) float32 densities (e/Å^3, unnormalised) in ``residue_types`` order."""
    d_min = d_min if d_min is not None else 3.0 * spacing
    length = box * spacing
    cell = gemmi.UnitCell(length, length, length, 90, 90, 90)
    mons = monomers()
    out = np.zeros((len(residue_types), box, box, box), np.float32)
    for i, code in enumerate(residue_types):
        atoms = mons[code]["atoms"]
        pos = np.array([a[2:5] for a in atoms], float)
        els = [a[1] for a in atoms]
        w = np.array([gemmi.Element(e).weight for e in els])
        pos = pos - (pos * w[:, None]).sum(0) / w.sum() + length / 2
        f = fft_structure_factors((pos, els), cell, (box, box, box), d_min, B_ISO)
        out[i], _ = maps_from_f(f, cell, (box, box, box))
    return out
