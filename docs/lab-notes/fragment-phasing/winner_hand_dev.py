"""The hand of fragment-phasing's winner read off its own centred map, on the development fragments only.

The fragments are the 80 of ``data_build/consensus_dev`` (positions 0, 2 and 27-29 of each cell of
``data_build/fragment_bench``; the benchmark takes positions 3-26 and 1, never these), stored by
``benchmarks/fragment_consensus_dev.py collect`` with every candidate's phases and the true phases (the label
only).  For each, the winner's |F_obs| synthesis is placed by
:func:`crysplugins.runtime.fragment_phasing.place` (centred, hand read by the shipped hand model) and its hand
compared with the true phases' (``search_origin_hand``).  Printed and written next to this script: the winner's
invariant error, whether its hand is right, the call's confidence and time, and counts of solved winners
(< 60°) on the right hand by length.

    OMP_NUM_THREADS=1 python docs/lab-notes/fragment-phasing/winner_hand_dev.py     (about 2 min)
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import gemmi
import numpy as np

from crysplugins.crystal.fourier import fourier_grid, stol2
from crysplugins.crystal.origin import search_origin_hand
from crysplugins.crystal.refine import RefineResult
from crysplugins.interface import CrystalMap
from crysplugins.runtime import fragment_phasing as fp

REPO = Path(__file__).resolve().parents[3]
STORE = REPO / "data_build" / "consensus_dev"
LENGTHS = ((2, 2), (3, 5), (6, 10), (11, 15))


def winner_result(d: np.lib.npyio.NpzFile) -> RefineResult:
    """The stored winner as a RefineResult whose map is its |F_obs| synthesis (as density_modify makes it)."""
    cell, hkl, f = gemmi.UnitCell(*d["cell"]), d["hkl"], d["f"]
    best = int(d["best"])
    phases = np.array(d["phases"][best], dtype=np.float64)
    d_min = float(1.0 / np.sqrt(4.0 * stol2(cell, hkl).max()))
    rho = fourier_grid(cell, hkl, d_min=d_min, rate=3.0).to_map(f * np.exp(1j * np.deg2rad(phases)))
    cmap = CrystalMap.from_array(rho.astype(np.float32), cell, gemmi.SpaceGroup("P 1"), name="winner", units="e/Å³")
    return RefineResult(cmap, hkl, phases, f, np.ones(len(f)), float(d["dm_cc"][best]), True)


def main() -> int:
    rows = []
    for path in sorted(STORE.glob("*.npz")):
        d = np.load(path)
        res, sequence = winner_result(d), str(d["sequence"])
        t0 = time.monotonic()
        _, hand = fp.place(res, sequence=sequence)
        seconds = time.monotonic() - t0
        right = not search_origin_hand(d["hkl"], d["f"], d["ref"], res.phases).inverted
        rows.append({"fragment": path.stem, "residues": len(sequence), "error": round(float(d["errors"][int(d["best"])]), 2),
                     "right": bool(right), "confidence": round(hand.confidence, 4), "seconds": round(seconds, 3)})
        print(rows[-1], flush=True)
    solved = [r for r in rows if r["error"] < 60.0]
    summary = {"fragments": len(rows), "solved": len(solved), "solved_right": sum(r["right"] for r in solved),
               "by_length": {f"{lo}-{hi}": [sum(r["right"] for r in solved if lo <= r["residues"] <= hi),
                                            sum(1 for r in solved if lo <= r["residues"] <= hi)]
                             for lo, hi in LENGTHS}}
    print(json.dumps(summary))
    out = Path(__file__).with_suffix(".json")
    out.write_text(json.dumps({"summary": summary, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
