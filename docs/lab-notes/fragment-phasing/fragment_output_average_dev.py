"""Would averaging the last cycles' phases help the fragment refiner, as it helps the crystal DM engine? (not adopted)

For every development fragment of data_build/consensus_dev the stored winner (after its 200 DM cycles) gets 40
more single cycles of ``refine.density_modify``; printed: id, invariant error of the winner, of the last cycle,
and of the unit-vector mean phases of the last 5, 10, 20 and 40 cycles (the true phases only to score).

    OMP_NUM_THREADS=1 .venv-test/bin/python docs/lab-notes/fragment-phasing/fragment_output_average_dev.py 0 2   (and 1 2)
"""
import sys
from pathlib import Path

import gemmi
import numpy as np

from crysplugins.crystal.refine import density_modify
from crysplugins.crystal.origin import search_origin_hand

STORE = Path(__file__).resolve().parents[3] / "data_build" / "consensus_dev"


def main(part: int, parts: int) -> None:
    for path in sorted(STORE.glob("*.npz"))[part::parts]:
        z = np.load(path)
        cell, hkl, f_obs = gemmi.UnitCell(*z["cell"]), z["hkl"], z["f"]
        phases = z["phases"][int(np.argmax(z["dm_cc"]))]
        row = [path.stem, search_origin_hand(hkl, f_obs, z["ref"], phases).phase_error]
        unit = []
        for _ in range(40):  # one cycle per call, so that every cycle's phases are seen
            phases = density_modify(None, (cell, hkl, f_obs), phases=phases, sequence=str(z["sequence"]), cycles=1,
                                    rate=3.0).phases
            unit.append(np.exp(1j * np.deg2rad(phases)))
        row.append(search_origin_hand(hkl, f_obs, z["ref"], phases).phase_error)
        for n in (5, 10, 20, 40):
            mean = np.degrees(np.angle(np.mean(unit[-n:], axis=0)))
            row.append(search_origin_hand(hkl, f_obs, z["ref"], mean).phase_error)
        print(row[0], *[f"{x:.2f}" for x in row[1:]], flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
