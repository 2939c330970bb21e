"""Does refusing a vote at a Cα with more than three links change the atom-fit hand's gated votes? (train maps)

For every k-th train map of 2 and of 3-5 residues in data_build/frag2-15 (never the test families), true and with
von Mises phase errors of mean 20° and 35°: the card's plain fit (``fit_atoms``), the covalent match, and the Cα
vote as shipped and with a Cα skipped when its fitted atom links to more than three atoms.  Prints, per length
group and error, the gated votes (≥ min_matched of the atoms placed) right / wrong for both rules, on each
map and on its enantiomer (inverted through the cell centre), whose right vote is D.

    OMP_NUM_THREADS=1 python docs/lab-notes/hand-atoms/ca_links_dev.py [--every 7] [--n 40]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from crysplugins.crystal.atom_fit import fit_atoms, map_terms
from crysplugins.crystal.covalent_match import (alpha_votes, bond_graph, element_cost, matches_from_any_root,
                                                 molecule_graph)
from crysplugins.crystal.maps import invert_grid
from crysplugins.runtime.hand import atoms_head
from crysplugins.runtime.models import find_card

sys.path.insert(0, str(Path(__file__).parent))
from tune_hand_atoms import train_maps  # noqa: E402


def votes(rho: np.ndarray, cell, sequence: str, head: dict) -> tuple[float, float, float]:
    """(vote as shipped, vote without Cα of > 3 links, matched share) of the plain fit of one map."""
    graph = molecule_graph(sequence)
    fitted = fit_atoms(map_terms(rho, cell), cell, len(graph.atoms), head["b_iso"], head["amplitude_cycles"],
                       head["per_round"])
    if len(fitted.frac) == 0:
        return 0.0, 0.0, 0.0
    linked, vectors = bond_graph(fitted, cell)
    matches = matches_from_any_root(graph, linked, head["element_weight"] * element_cost(graph, fitted.weights),
                                    sequence)
    if not matches:
        return 0.0, 0.0, 0.0
    degree = linked.sum(axis=1)
    shipped = float(np.mean([alpha_votes(graph, m, vectors, sequence) for m in matches]))
    strict = []
    for m in matches:
        kept = {k: v for k, v in m.items()}
        for i, code in enumerate(sequence):  # a Cα with a fourth link: its N/C/Cβ triple is ambiguous
            ca = m.get(graph.index[(i, "CA")])
            if ca is not None and degree[ca] > 3:
                kept[graph.index[(i, "CA")]] = None
        strict.append(alpha_votes(graph, kept, vectors, sequence))
    matched = max(sum(v is not None for v in m.values()) for m in matches) / len(graph.atoms)
    return shipped, float(np.mean(strict)), matched


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--every", type=int, default=7)
    p.add_argument("--n", type=int, default=40)
    args = p.parse_args()
    head = atoms_head(find_card("fragment_hand_atoms"))
    rng = np.random.default_rng(11)
    out = {}
    for name, lengths in (("2", (2, 2)), ("3-5", (3, 5))):
        tally: dict = {}
        for row, m, uc, _ in train_maps(lengths, args.every, args.n, (0.0, 20.0, 35.0), rng):
            t = tally.setdefault(f"{row['error']:g}", {"n": 0, "shipped_right": 0, "shipped_wrong": 0,
                                                        "strict_right": 0, "strict_wrong": 0})
            rho = np.asarray(m, dtype=np.float64)
            for sign, grid in ((1, rho), (-1, invert_grid(rho))):  # the map (L) and its enantiomer (D)
                shipped, strict, share = votes(grid, uc, row["sequence"], head)
                t["n"] += 1
                if share >= head["min_matched"]:
                    for rule, v in (("shipped", shipped), ("strict", strict)):
                        t[f"{rule}_right"] += int(sign * v > 0)
                        t[f"{rule}_wrong"] += int(sign * v < 0)
        out[name] = tally
        print(name, json.dumps(tally), flush=True)
    Path(__file__).with_name("ca_links_dev.json").write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
