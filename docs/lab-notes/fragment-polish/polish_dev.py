"""Development study: polish fragment-phasing's winner with the crystal DM engine (σ_A weighting, phase
combination, output averaging, resolution extension) and see whether its phase error and hand call improve.

Train-family fragments of ``benchmarks/hand_pipeline_dev.py`` with d_min ≥ ``--min-d`` (every ``--stride``-th);
fragment-phasing's search (no network) makes the winner; its phases, as HL coefficients with a constant figure of
merit, start ``run_dm`` (engine defaults, P1, the sequence's solvent fraction).  Recorded per fragment: the winner's
and each polished map's invariant error (against the true phases: the analysis only) and hand logit.

    OMP_NUM_THREADS=1 python docs/lab-notes/fragment-polish/polish_dev.py --part 0 --parts 2 --out /tmp/p0.jsonl
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO))

import hand_pipeline_dev as dev  # noqa: E402


def main() -> int:
    import gemmi

    from crysplugins.crystal.dm.engine import run_dm
    from crysplugins.crystal.dm.hl import hl_from_phase_fom
    from crysplugins.crystal.dm.reflections import ReflectionSet
    from crysplugins.crystal.dm.settings import DMSettings
    from crysplugins.crystal.maps import centre_density
    from crysplugins.crystal.origin import search_origin_hand
    from crysplugins.crystal.refine import solvent_fraction_from_sequence
    from crysplugins.runtime import fragment_phasing as fp
    from crysplugins.runtime.hand import hand_logits

    p = argparse.ArgumentParser()
    p.add_argument("--part", type=int, default=0)
    p.add_argument("--parts", type=int, default=1)
    p.add_argument("--stride", type=int, default=2)
    p.add_argument("--min-d", type=float, default=2.2)
    p.add_argument("--foms", type=float, nargs="+", default=[0.3, 0.6])
    p.add_argument("--out", required=True)
    a = p.parse_args()
    rows = dev.drawn_rows()
    frags = (frag for frag in dev.dev_fragments(dev.DATA, rows) if frag.d_min >= a.min_d)
    with open(a.out, "w") as fh:
        for k, frag in enumerate(frags, start=1):
            if k % a.stride or (k // a.stride) % a.parts != a.part:
                continue
            cell, hkl, f, sequence = frag.cell, frag.hkl, frag.f, frag.sequence
            win = fp.solve(fp.make_setup(cell, hkl, f, sequence)).winner.refined

            def record(phases: np.ndarray, rho: np.ndarray) -> dict:
                truth = search_origin_hand(hkl, f, frag.phi_true, phases)
                centred, _ = centre_density(np.asarray(rho, dtype=np.float64), cell=cell)
                logit = float(hand_logits(centred[None], fp.HAND_MODEL, cells=[np.array(cell.parameters)],
                                          sequences=[sequence])[0])
                return {"error": truth.phase_error, "wrong_hand": truth.inverted, "logit": logit}

            out = {"id": frag.ident, "n_residues": len(sequence), "d_min": frag.d_min,
                   "winner": record(win.phases, win.map.array)}
            refl = ReflectionSet(cell, gemmi.SpaceGroup("P 1"), hkl, f, 0.05 * f)
            solvent = solvent_fraction_from_sequence(sequence, cell)
            for fom in a.foms:
                t0 = time.monotonic()
                hl = hl_from_phase_fom(np.radians(win.phases), np.full(len(f), fom), refl.centric)
                res = run_dm(refl, hl, DMSettings(), solvent_fraction=solvent)
                out[f"polish{fom}"] = {**record(res.phib, res.map.array), "seconds": time.monotonic() - t0}
            fh.write(json.dumps(out) + "\n")
            fh.flush()
            print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
