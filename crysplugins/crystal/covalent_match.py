"""The hand of a short fragment read off its atoms: covalent graph matching and the chirality at Cα.

Proteins hold L-amino acids: at every Cα but glycine's, the chiral volume (N − Cα)·((C − Cα) × (Cβ − Cα)) is
positive (about +2.5 Å³).  Given atoms fitted to a map (:mod:`crysplugins.crystal.atom_fit`) and the fragment's
sequence, this module

1. links fitted atoms closer than a bond (:data:`BOND_RANGE`), in the cell's Cartesian frame with the nearest
   periodic image;
2. maps the sequence's covalent graph (heavy atoms of ``monomers.json``, bonds by ideal distance, peptide bonds
   C(i)–N(i+1)) onto those atoms by a depth-first search: each molecule atom in breadth-first order takes a
   fitted atom bonded to its parent's, or none (a few missing atoms are allowed); the score counts matched atoms,
   less one per molecule bond whose atoms are not linked, less the element mismatch (fitted weight over the
   median weight against Z/6) so that C=O is not taken for Cβ–Oγ;
3. votes at every Cα whose N, C and Cβ are matched: +1 for a positive chiral volume (L), −1 for negative,
   averaged over the equally good matches.

A graph match is blind to mirror images, so the inverted map gets the same match and exactly the opposite vote.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import gemmi
import numpy as np

from crysplugins.crystal.atom_fit import FittedAtoms
from crysplugins.crystal.standardise import monomers

#: distances (Å) between fitted atoms read as a covalent bond (C=O 1.23 Å to C–S 1.81 Å, with room for fitting
#: error; 1–3 distances start at 2.2 Å)
BOND_RANGE = (0.9, 2.05)
#: ideal distance (Å) under which two atoms of a monomer are bonded
_IDEAL_BOND = 1.9
_ELECTRONS = {"C": 6, "N": 7, "O": 8, "S": 16}


@dataclass(frozen=True)
class MoleculeGraph:
    """Heavy atoms of a peptide ((residue index, name, element), ...), the neighbours of each, and the index
    of (residue index, atom name)."""

    atoms: tuple[tuple[int, str, str], ...]
    neighbours: tuple[frozenset[int], ...]
    index: dict


@lru_cache(maxsize=256)
def molecule_graph(sequence: str) -> MoleculeGraph:
    """The covalent graph of a linear peptide of one-letter ``sequence`` (no OXT, as in the training data)."""
    table = monomers()
    atoms, coords = [], []
    for i, code in enumerate(sequence):
        for name, element, *xyz in table[code]["atoms"]:
            atoms.append((i, name, element))
            coords.append(xyz)
    xyz = np.array(coords, dtype=np.float64)
    residue = np.array([a[0] for a in atoms])
    dist = np.linalg.norm(xyz[:, None] - xyz[None], axis=-1)
    bonded = (dist < _IDEAL_BOND) & (residue[:, None] == residue[None, :])
    np.fill_diagonal(bonded, False)
    index = {(a[0], a[1]): k for k, a in enumerate(atoms)}
    for i in range(len(sequence) - 1):
        c, n = index[(i, "C")], index[(i + 1, "N")]
        bonded[c, n] = bonded[n, c] = True
    neighbours = tuple(frozenset(np.flatnonzero(row).tolist()) for row in bonded)
    return MoleculeGraph(tuple(atoms), neighbours, index)


def bond_graph(fitted: FittedAtoms, cell: gemmi.UnitCell) -> tuple[np.ndarray, np.ndarray]:
    """(linked (n, n) bool, vectors (n, n, 3) Å from atom j to atom i's nearest image) of fitted atoms."""
    orth = np.array(cell.orth.mat.tolist())
    d = fitted.frac[:, None, :] - fitted.frac[None, :, :]
    d -= np.round(d)
    best_vec = d @ orth.T
    best = np.linalg.norm(best_vec, axis=-1)
    for shift in np.ndindex(3, 3, 3):  # oblique cells: the nearest image need not be the rounded one
        vec = (d + np.array(shift) - 1) @ orth.T
        dist = np.linalg.norm(vec, axis=-1)
        closer = dist < best
        best_vec[closer], best[closer] = vec[closer], dist[closer]
    linked = (best > BOND_RANGE[0]) & (best < BOND_RANGE[1])
    np.fill_diagonal(linked, False)
    return linked, best_vec


def element_cost(graph: MoleculeGraph, weights: np.ndarray) -> np.ndarray:
    """(molecule atoms, fitted atoms) cost (w / median w − Z / 6)² of putting an atom on a fitted atom."""
    z = np.array([_ELECTRONS[a[2]] for a in graph.atoms], dtype=np.float64) / 6.0
    ratio = np.asarray(weights, dtype=np.float64) / max(float(np.median(weights)), 1e-12)
    return (ratio[None, :] - z[:, None]) ** 2


def _bfs_order(graph: MoleculeGraph, root: int) -> tuple[list[int], dict[int, int | None]]:
    order, parent = [root], {root: None}
    for a in order:
        for b in sorted(graph.neighbours[a]):
            if b not in parent:
                parent[b] = a
                order.append(b)
    return order, parent


def best_matches(graph: MoleculeGraph, linked: np.ndarray, cost: np.ndarray, root: int, max_missing: int = 3,
                 max_nodes: int = 200_000, keep: int = 50) -> tuple[float, list[dict[int, int | None]]]:
    """(best score, up to ``keep`` matches with that score) of the molecule onto the fitted atoms, the search
    rooted at molecule atom ``root`` (tried on every fitted atom); see the module doc for the score."""
    order, parent = _bfs_order(graph, root)
    fitted_neighbours = [np.flatnonzero(row) for row in linked]
    best: dict = {"score": -np.inf, "matches": []}
    nodes = [0]

    def search(k: int, match: dict, used: set, score: float, missing: int) -> None:
        nodes[0] += 1
        if nodes[0] > max_nodes or score + (len(order) - k) < best["score"] - 1e-9:
            return
        if k == len(order):
            if score > best["score"] + 1e-9:
                best["score"], best["matches"] = score, [dict(match)]
            elif len(best["matches"]) < keep:
                best["matches"].append(dict(match))
            return
        atom, up = order[k], parent[order[k]]
        if up is not None and match[up] is None:  # below a missing atom everything is missing
            match[atom] = None
            search(k + 1, match, used, score, missing)
            del match[atom]
            return
        for q in (range(len(linked)) if up is None else fitted_neighbours[match[up]]):
            if q in used:
                continue
            broken = sum(1 for b in graph.neighbours[atom]
                         if b != up and match.get(b) is not None and not linked[q, match[b]])
            match[atom] = q
            used.add(q)
            search(k + 1, match, used, score + 1.0 - broken - cost[atom, q], missing)
            used.discard(q)
            del match[atom]
        if up is not None and missing < max_missing:
            match[atom] = None
            search(k + 1, match, used, score, missing + 1)
            del match[atom]

    search(0, {}, set(), 0.0, 0)
    return float(best["score"]), best["matches"]


def alpha_votes(graph: MoleculeGraph, match: dict, vectors: np.ndarray, sequence: str) -> float:
    """Σ over the non-glycine Cα whose N, C and Cβ are matched of the sign of the chiral volume (+1: L)."""
    vote = 0.0
    for i, code in enumerate(sequence):
        if code == "G":
            continue
        ca, n, c, cb = (match.get(graph.index[(i, name)]) for name in ("CA", "N", "C", "CB"))
        if None in (ca, n, c, cb):
            continue
        volume = np.dot(vectors[n, ca], np.cross(vectors[c, ca], vectors[cb, ca]))
        vote += float(np.sign(volume))
    return vote


@dataclass
class AtomHandVote:
    """The Cα vote of a map (> 0: L, keep; < 0: D, invert; 0: no Cα read), how many molecule atoms the best
    match placed, of how many, and the fit it was read from."""

    vote: float
    matched: float
    n_atoms: int
    fitted: FittedAtoms


def matches_from_any_root(graph: MoleculeGraph, linked: np.ndarray, cost: np.ndarray, sequence: str
                          ) -> list[dict[int, int | None]]:
    """The best matches (:func:`best_matches`) over every residue's Cα as the search root (ties all kept)."""
    score, matches = -np.inf, []
    for i in range(len(sequence)):
        s, found = best_matches(graph, linked, cost, graph.index[(i, "CA")])
        if s > score + 1e-9:
            score, matches = s, found
        elif abs(s - score) <= 1e-9:
            matches += found
    return matches


def hand_vote(fitted: FittedAtoms, cell: gemmi.UnitCell, sequence: str, element_weight: float = 1.0
              ) -> AtomHandVote:
    """The mean Cα vote over the best matches of ``sequence``'s covalent graph onto ``fitted`` atoms, every
    residue's Cα tried as the search root."""
    graph = molecule_graph(sequence)
    if len(fitted.frac) == 0:
        return AtomHandVote(0.0, 0.0, len(graph.atoms), fitted)
    linked, vectors = bond_graph(fitted, cell)
    matches = matches_from_any_root(graph, linked, element_weight * element_cost(graph, fitted.weights), sequence)
    votes = [alpha_votes(graph, m, vectors, sequence) for m in matches]
    matched = max((sum(v is not None for v in m.values()) for m in matches), default=0)
    return AtomHandVote(float(np.mean(votes)) if votes else 0.0, float(matched), len(graph.atoms), fitted)
