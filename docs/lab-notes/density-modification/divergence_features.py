"""Statistics of density-modification results that might flag a run that made its phases worse (no true
phases in them), written beside the true outcome; the data of poor_phases.json["divergence_features"].

    OMP_NUM_THREADS=1 python docs/lab-notes/density-modification/divergence_features.py OUT.jsonl \
        dev,data_build/dm_dev_lowres.npz,data_build/dm_dev_small.npz 0/1 80,65,50 1,2

(run from the repository root; the tuning sets come from benchmarks/build_dm_dev_sources.py; PART/PARTS splits
the runs between processes.  The engine runs without the σ_A scale for poor phases, as when measured.)"""
import json, sys, time
from pathlib import Path
import numpy as np
sys.path.insert(0, "benchmarks")
import bench_density_modify as B
from crysplugins.crystal.dm import DMSettings, run_dm
from crysplugins.crystal.dm.engine import DMResult
from crysplugins.crystal.dm.hl import phase_fom_from_hl
from crysplugins.crystal.dm.selection import omit_agreement
from crysplugins.datasets.solvent_windows import load_sources

srcs = []
for p in sys.argv[2].split(","):
    if p == "dev":
        srcs += [s for s in B.load_crystals(Path("data_build/dm_bench_sources.npz")) if s.name in B.DEV_SPLIT]
    else:
        srcs += load_sources(Path(p))
part, nparts = map(int, sys.argv[3].split("/"))
levels = [float(x) for x in sys.argv[4].split(",")]
seeds = [int(x) for x in sys.argv[5].split(",")]
out = open(sys.argv[1], "a")
k = 0
for src in srcs:
    for level in levels:
        for seed in seeds:
            k += 1
            if k % nparts != part:
                continue
            case = B.make_case(src, level, seed)
            r = case.refl
            t0 = time.perf_counter()
            settings = DMSettings()
            settings.weighting.sigmaa_scale_poor = None  # the engine as it was when this was measured
            res = run_dm(r, case.hl, settings, solvent_fraction=case.solvent_fraction)
            secs = time.perf_counter() - t0
            true = np.angle(case.f_true)
            err = B.phase_error(r.fobs, true, np.radians(res.phib))
            phi_e, m_e = phase_fom_from_hl(case.hl, r.centric, r.centric_phase)
            hl_mod = res.hl - case.hl
            phi_m, m_m = phase_fom_from_hl(hl_mod, r.centric, r.centric_phase)
            kap = np.hypot(case.hl[:, 0], case.hl[:, 1])
            w = r.fobs
            def expcos(phi):
                c = np.cos(phi - phi_e)
                return float(np.sum(w * c) / np.sum(w * m_e)), float(np.sum(kap * c) / np.sum(kap * m_e))
            exp_res = DMResult(reflections=r, phib=np.degrees(phi_e), fom=m_e, hl=case.hl,
                               fwt=m_e * r.fobs * np.exp(1j * phi_e), map=res.map, mask=res.mask)
            row = dict(name=src.name, level=level, seed=seed, n=len(r.hkl), d_min=round(r.d_min, 2),
                       solvent=round(case.solvent_fraction, 3), start=round(case.start_error, 2),
                       final=round(err, 2), mod_err=round(B.phase_error(r.fobs, true, phi_m), 2),
                       secs=round(secs, 1), fom=round(float(np.average(res.fom, weights=w)), 3),
                       fom_exp=round(float(np.average(m_e, weights=w)), 3),
                       expcos_out=expcos(np.radians(res.phib)), expcos_mod=expcos(phi_m),
                       omit_dm=round(omit_agreement(res), 4), omit_exp=round(omit_agreement(exp_res), 4),
                       omit_dm_ph=round(omit_agreement(res, source="phases"), 4))
            out.write(json.dumps(row) + "\n"); out.flush()
            print(row, flush=True)
