"""How often the U-net and the local-rms mask of the same starting map are wrong on the same voxels (tuning sets,
50° and 65°, seed 1): ``OMP_NUM_THREADS=1 python docs/lab-notes/density-modification/mask_error_overlap.py``.
Rows: mask_oracle.json["errcorr"];
another U-net card with UNET_MODEL=NAME (CRYSPLUGINS_MODELS=its folder): unet_lv_weighted.json."""
import os, sys, json
from pathlib import Path
import numpy as np
sys.path.insert(0, 'benchmarks')
import bench_density_modify as b
from crysplugins.crystal.dm import DMSettings
from crysplugins.crystal.dm.engine import engine_grid
from crysplugins.crystal.dm.hl import phase_fom_from_hl
from crysplugins.crystal.dm.masking import LocalDeviation, MaskRequest, resample, solvent_mask, symmetrized
from crysplugins.dm_command import unet_mask_provider

unet = unet_mask_provider(os.environ.get("UNET_MODEL", "solvent-unet"))
out = []
for which in ('small', 'dev', 'lowres'):
    srcs = ([s for s in b.load_crystals(Path('data_build/dm_bench_sources.npz')) if s.name in b.DEV_SPLIT]
            if which == 'dev' else b.load_sources(Path(f'data_build/dm_dev_{which}.npz')))
    for src in srcs:
        for level in (50.0, 65.0):
            case = b.make_case(src, level, 1)
            refl = case.refl
            shape = engine_grid(refl, DMSettings())
            phib, fom = phase_fom_from_hl(case.hl, refl.centric, refl.centric_phase)
            coef = fom * refl.fobs * np.exp(1j * phib)
            rho = refl.to_map(coef, shape)
            truth = resample(src.mask, shape) > 0.5
            s = truth.mean()
            lv = solvent_mask(symmetrized(-LocalDeviation(refl.cell, shape)(rho, refl.d_min + 4.0, 'rms', 0.0),
                                          refl.cell, refl.spacegroup), s)
            def map_on(sh, refl=refl, coef=coef):
                return refl.crystal_map(refl.to_map(coef, tuple(int(x) for x in sh)), name='start')
            u = unet(MaskRequest(cycle=0, map=map_on(shape), map_on=map_on, d_min=refl.d_min, mean_fom=0.5))
            u = resample(np.asarray(u.array if hasattr(u, 'array') else u, dtype=np.float64), shape)
            um = solvent_mask(symmetrized(u, refl.cell, refl.spacegroup), s)
            lw, uw = lv != truth, um != truth
            row = {'set': which, 'name': src.name, 'level': level, 'lv_acc': round(1 - lw.mean(), 4),
                   'unet_acc': round(1 - uw.mean(), 4), 'p_lv_wrong': round(lw.mean(), 4),
                   'p_lv_wrong_given_unet_wrong': round(lw[uw].mean(), 4)}
            print(json.dumps(row), flush=True)
