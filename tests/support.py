"""Test helpers shared by several test modules (registered by conftest.py as ``crysplugins_test_support``;
test modules cannot import each other under pytest's importlib import mode)."""
from __future__ import annotations

import gemmi
import numpy as np


def blob_structure(sg: str = "P 21 21 21", cell=(30.0, 36.0, 42.0, 90, 90, 90), n: int = 60,
                   seed: int = 0, centre=(7.0, 8.0, 9.0), spread: float = 3.0,
                   rng: np.random.Generator | None = None) -> gemmi.Structure:
    """A compact cluster of carbon atoms (a pretend protein) in a crystal: ``n`` CA atoms drawn around
    ``centre`` (Å) with standard deviation ``spread`` (Å), from ``rng`` (else a generator seeded ``seed``)."""
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
        atom.occ, atom.b_iso = 1.0, 20.0
        res.add_atom(atom)
        chain.add_residue(res)
    model.add_chain(chain)
    st.add_model(model)
    st.setup_entities()
    return st
