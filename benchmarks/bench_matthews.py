"""Matthews coefficient and Kantardjieff & Rupp (2003) copy probabilities against two published examples.

1. CCP4 ``matthews_coef`` documentation, AUTO + RESO 5.0: it prints Vm, % solvent, P(5.00 Å) and P(tot)
   for 1, 2 and 3 copies but not the cell or the weight, so the one-copy Vm is recovered from the printed
   69.14 % solvent with matthews_coef's own constant (solvent = 1 - 0.74 / (0.602 Vm)).
2. PDB 1RX2 (REMARK 280: Vm 2.15 Å³/Da, 42.80 % solvent): its cell, space group, 1.80 Å and the shipped
   159-residue example sequence, through ``matthews_table`` as the ``solvent-content`` predictor calls it.

Reads nothing outside the repository.  Writes ``benchmarks/out/matthews.json``.

    python benchmarks/bench_matthews.py
"""
from __future__ import annotations

import time

import numpy as np

from crysplugins.crystal import io, matthews
from crysplugins.plugins.solvent_content import SolventContentPredictor
from figure_output import write_figure

CCP4_PUBLISHED = {"vm": [3.98, 1.99, 1.33], "solvent_percent": [69.14, 38.28, 7.42],
                  "p_5A": [0.19, 0.80, 0.01], "p_tot": [0.09, 0.90, 0.01]}
CCP4_SOLVENT_CONSTANT = 0.74 / 0.602
RX2 = {"cell": "34.321 45.508 98.912 90 90 90", "spacegroup": "P 21 21 21", "d_min": 1.80,
       "deposited_vm": 2.15, "deposited_solvent": 0.4280}


def ccp4_example() -> dict:
    vm1 = CCP4_SOLVENT_CONSTANT / (1.0 - CCP4_PUBLISHED["solvent_percent"][0] / 100.0)
    vm = vm1 / np.arange(1, 4)
    ours = {"vm": vm, "solvent_percent": 100 * matthews.solvent_fraction(vm),
            "p_5A": matthews.copy_probabilities(vm, d_min=5.0), "p_tot": matthews.copy_probabilities(vm, None)}
    ours = {k: [round(float(x), 4) for x in v] for k, v in ours.items()}
    worst = max(abs(a - b) for k in ("p_5A", "p_tot") for a, b in zip(ours[k], CCP4_PUBLISHED[k]))
    return {"published": CCP4_PUBLISHED, "ours": ours, "max_probability_difference": round(worst, 4)}


def rx2_example() -> dict:
    seq = SolventContentPredictor().example_inputs()["sequence"]
    res = matthews.matthews_table(io.parse_cell(RX2["cell"]), io.parse_spacegroup(RX2["spacegroup"]),
                                  seq.weight(), d_min=RX2["d_min"])
    return {"deposited": RX2, "molecular_weight": round(seq.weight(), 1), "copies": res.best.copies,
            "vm": round(res.best.vm, 4), "solvent_fraction": round(res.best.solvent_fraction, 4),
            "candidates": len(res.rows)}


def main() -> int:
    t0 = time.perf_counter()
    results = {"ccp4_matthews_coef_example": ccp4_example(), "pdb_1rx2": rx2_example()}
    print(results)
    write_figure("matthews", results, time.perf_counter() - t0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
