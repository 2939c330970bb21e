"""Read and standardise protein structures (shared by the Patterson dataset and the solvent work).

Paper 000, appendix B, "Preprocessing and Validation": hydrogens removed, alternative conformations
removed (the first conformer is kept), selenomethionine (MSE) rebuilt as methionine (SE -> SD, element
S), B = 20 Å^2 for every atom (applied when fragments are cut: :data:`B_ISO`).  Fragments with
non-standard residues, missing residues or missing heavy atoms are rejected by
:mod:`crysplugins.datasets.fragments` using the heavy-atom sets in ``crysplugins/data/monomers.json``.
"""
from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path

import gemmi

B_ISO = 20.0  # Å^2, appendix B
RESIDUE_TYPES = "ACDEFGHIKLMNPQRSTVWY"
_DATA = Path(__file__).resolve().parent.parent / "data" / "monomers.json"


@lru_cache(maxsize=1)
def monomers() -> dict:
    """{one-letter code: {"name": three-letter, "atoms": [[name, element, x, y, z], ...]}} (Å)."""
    return json.loads(_DATA.read_text())["residues"]


@lru_cache(maxsize=1)
def heavy_atoms() -> dict[str, tuple[tuple[str, str], ...]]:
    """Three-letter code -> ((atom name, element), ...) of the standard heavy atoms (no OXT)."""
    return {v["name"]: tuple((a[0], a[1]) for a in v["atoms"]) for v in monomers().values()}


@lru_cache(maxsize=1)
def three_to_one() -> dict[str, str]:
    return {v["name"]: k for k, v in monomers().items()}


def read_structure_file(path: str | os.PathLike) -> gemmi.Structure:
    """Read a PDB/mmCIF file (gzipped or not) with gemmi and standardise it (see module doc).

    Raises whatever gemmi raises for an unreadable file; callers decide whether that is fatal.
    """
    st = gemmi.read_structure(str(path), merge_chain_parts=True)
    if len(st) == 0:
        raise ValueError(f"{path} holds no model")
    standardise(st)
    return st


def standardise(st: gemmi.Structure) -> gemmi.Structure:
    """In place: keep the first model, drop H/waters, first altloc, MSE -> MET; set up entities."""
    while len(st) > 1:
        del st[len(st) - 1]
    st.remove_hydrogens()
    st.remove_alternative_conformations()
    st.remove_waters()
    for chain in st[0]:
        for res in chain:
            if res.name == "MSE":
                res.name = "MET"
                res.het_flag = "A"
                for at in res:
                    if at.name == "SE":
                        at.name = "SD"
                        at.element = gemmi.Element("S")
    st.setup_entities()
    return st
