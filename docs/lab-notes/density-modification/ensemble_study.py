"""Study: the output of several density-modification runs (settings variants) averaged, on a tuning set.

SET is ``small`` or ``lowres`` (the tuning sets of benchmarks/build_dm_dev_sources.py) or comma-separated benchmark
crystals (the dev split: 1EJG,1IA1,1ORC,1RX2,1RX4); VARIANTS a JSON list of setting overrides, one per run (as
``bench_density_modify.py --set``).  For every crystal, level and seed (1, 2; LV mask): each run's final error, the
average of every subset of runs and of all runs (experimental HL + mean modified HL), written to
``runs/guard/w_<TAG>_<set>.json``.  Rows of the note: ensemble.json.

    OMP_NUM_THREADS=1 python docs/lab-notes/density-modification/ensemble_study.py small ens3 \
        '[{}, {"mask.radius_extra": 3.0}, {"mask.radius_extra": 5.0}]' 40,50,65,80
"""
import json
import sys
import time
from itertools import combinations
from pathlib import Path

import numpy as np

sys.path.insert(0, "benchmarks")
import bench_density_modify as b  # noqa: E402
from crysplugins.crystal.dm import DMSettings, run_dm  # noqa: E402
from crysplugins.crystal.dm.hl import phase_fom_from_hl  # noqa: E402

which, tag = sys.argv[1], sys.argv[2]
variants = json.loads(sys.argv[3])
levels = [float(x) for x in sys.argv[4].split(",")] if len(sys.argv) > 4 else [40, 50, 65]
src = {"small": "data_build/dm_dev_small.npz", "lowres": "data_build/dm_dev_lowres.npz"}.get(which)
crystals = b.load_sources(Path(src)) if src else [
    s for s in b.load_crystals(Path("data_build/dm_bench_sources.npz")) if s.name in which.split(",")]


def error(case: b.Case, hl: np.ndarray) -> float:
    phib, _ = phase_fom_from_hl(hl, case.refl.centric, case.refl.centric_phase)
    return round(b.phase_error(case.refl.fobs, np.angle(case.f_true), phib), 2)


rows = []
for s in crystals:
    for level in levels:
        for seed in (1, 2):
            case = b.make_case(s, level, seed)
            t0 = time.perf_counter()
            terms, errs = [], []
            for v in variants:
                st = DMSettings()
                for k, val in v.items():
                    b._override(st, f"{k}={val}")
                res = run_dm(case.refl, case.hl, st, solvent_fraction=case.solvent_fraction)
                terms.append(res.hl - case.hl)
                errs.append(b.phase_error(case.refl.fobs, np.angle(case.f_true), np.radians(res.phib)))
            subsets = {"".join(map(str, idx)): error(case, case.hl + np.mean([terms[i] for i in idx], axis=0))
                       for k in range(2, len(terms)) for idx in combinations(range(len(terms)), k)}
            rows.append({"subsets": subsets, "name": case.name, "level": level, "seed": seed,
                         "reflections": len(case.refl.hkl), "start": case.start_error,
                         "ours-lv": {"error": error(case, case.hl + np.mean(terms, axis=0)),
                                     "members": [round(e, 2) for e in errs],
                                     "seconds": round(time.perf_counter() - t0, 2)}})
            print(json.dumps(rows[-1]), flush=True)
name = {"small": "dm_dev_small", "lowres": "dm_dev_lowres"}.get(which, "dev")
Path("runs/guard").mkdir(parents=True, exist_ok=True)
Path(f"runs/guard/w_{tag}_{name}.json").write_text(json.dumps({"rows": rows}))
