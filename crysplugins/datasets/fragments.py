"""Cut fragments of N adjacent residues out of protein chains (paper 000, appendix B and C).

Every window of ``n_residues`` adjacent residues of a protein chain is a candidate; consecutive windows
start ``max(1, n_residues - overlap)`` residues apart (overlap at most 5 in the paper).  One chain per
entity is used (the first), so NCS copies do not produce duplicate examples.  A window is dropped when
it contains

* a non-standard residue (after MSE -> MET): reason ``nonstandard``;
* a missing residue: a gap in ``label_seq`` (when the file has it) -> ``numbering_gap``, or a peptide
  C(i)-N(i+1) distance above :data:`MAX_PEPTIDE` Å -> ``chain_break``;
* a missing heavy atom of the standard residue -> ``missing_atoms``.

Example IDs follow appendix C: ``PDBID_entity_position`` where position is the 0-based index of the
first residue among the chain's modelled residues.  Coordinates in Å; B is set later to 20 Å^2.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import gemmi
import numpy as np

from crysplugins.crystal.standardise import heavy_atoms, three_to_one

MAX_PEPTIDE = 2.0  # Å, C-N distance above which the chain is considered broken


@dataclass
class ResidueRecord:
    one: str | None          # one-letter code, None when non-standard
    complete: bool           # all standard heavy atoms present
    positions: np.ndarray    # (k,3) heavy atoms in the standard order (Å)
    elements: tuple[str, ...]
    label_seq: int | None
    n_pos: np.ndarray | None
    c_pos: np.ndarray | None


@dataclass
class Fragment:
    id: str
    chain: str
    entity: str
    start: int
    sequence: str
    positions: np.ndarray
    elements: tuple[str, ...]


def _record(res: gemmi.Residue) -> ResidueRecord:
    one = three_to_one().get(res.name)
    names = heavy_atoms().get(res.name)
    seq = res.label_seq if res.label_seq is not None and res.label_seq > 0 else None
    atoms = {at.name: at for at in res}
    n_at, c_at = atoms.get("N"), atoms.get("C")
    npos = np.array(n_at.pos.tolist()) if n_at else None
    cpos = np.array(c_at.pos.tolist()) if c_at else None
    if one is None or names is None:
        return ResidueRecord(None, False, np.zeros((0, 3)), (), seq, npos, cpos)
    missing = [n for n, _ in names if n not in atoms]
    pos = np.array([atoms[n].pos.tolist() for n, _ in names if n in atoms]).reshape(-1, 3)
    return ResidueRecord(one, not missing, pos, tuple(e for n, e in names if n in atoms), seq, npos, cpos)


def protein_chains(st: gemmi.Structure) -> list[tuple[str, str, list[gemmi.Residue]]]:
    """(chain name, entity id, residues) for the first chain of each protein entity of model 1."""
    out, seen = [], set()
    for chain in st[0]:
        poly = chain.get_polymer()
        if len(poly) == 0:
            continue
        ent = st.get_entity_of(poly)
        ent_id = ent.name if ent is not None else chain.name
        if ent is not None and ent.polymer_type not in (gemmi.PolymerType.PeptideL, gemmi.PolymerType.Unknown):
            continue
        if ent_id in seen:
            continue
        seen.add(ent_id)
        out.append((chain.name, ent_id, list(poly)))
    return out


def links(records: list[ResidueRecord]) -> tuple[np.ndarray, list[str | None]]:
    """For each residue i: ok flag and the reason residue i+1 does not follow residue i (or None)."""
    reasons: list[str | None] = []
    for a, b in zip(records[:-1], records[1:]):
        if a.label_seq is not None and b.label_seq is not None and b.label_seq - a.label_seq != 1:
            reasons.append("numbering_gap")
        elif a.c_pos is None or b.n_pos is None or np.linalg.norm(a.c_pos - b.n_pos) > MAX_PEPTIDE:
            reasons.append("chain_break")
        else:
            reasons.append(None)
    return np.array([r is None for r in reasons]), reasons


def windows(st: gemmi.Structure, pdb_id: str, n_residues: int, overlap: int = 5,
            drops: Counter | None = None, cut: bool = True) -> list[Fragment]:
    """All valid fragments of ``n_residues`` (see module doc); ``drops`` counts rejected windows by reason.

    With ``cut=False`` the fragments carry no coordinates (fast enumeration for planning).
    """
    stride = max(1, n_residues - overlap)
    out: list[Fragment] = []
    drops = drops if drops is not None else Counter()
    for chain_name, ent_id, residues in protein_chains(st):
        recs = [_record(r) for r in residues]
        if len(recs) < n_residues:
            continue
        _, reasons = links(recs)
        for start in range(0, len(recs) - n_residues + 1, stride):
            win = recs[start:start + n_residues]
            reason = None
            if any(r.one is None for r in win):
                reason = "nonstandard"
            else:
                for r in reasons[start:start + n_residues - 1]:
                    if r is not None:
                        reason = r
                        break
                if reason is None and not all(r.complete for r in win):
                    reason = "missing_atoms"
            if reason is not None:
                drops[reason] += 1
                continue
            seq = "".join(r.one for r in win)
            fid = f"{pdb_id}_{ent_id}_{start}"
            if cut:
                pos = np.concatenate([r.positions for r in win])
                els = tuple(e for r in win for e in r.elements)
            else:
                pos, els = np.zeros((0, 3)), ()
            out.append(Fragment(fid, chain_name, ent_id, start, seq, pos, els))
    return out
