"""U-net and local-rms accuracy on the maps the U-net mode hands its provider (cycles 0, 5, ..., 25; tuning sets, 50°
and 65°, seed 1, one run): ``OMP_NUM_THREADS=1 python docs/lab-notes/density-modification/dm_map_accuracy.py
[small,dev,lowres]`` (another card with UNET_MODEL and CRYSPLUGINS_MODELS).  lv_engine: local rms at the radius the
engine uses in that cycle; lvX: at d_min + X Å; map_cc: the map's correlation with the true map; final: the run's
final error.  Rows: unet_late_cycles.json["dm_maps"]."""
import os, sys, json
from pathlib import Path
import numpy as np
sys.path.insert(0, str(Path(__file__).parent))
import tuning_sets as ts
from crysplugins.crystal.dm import DMSettings
from crysplugins.crystal.dm.masking import resample, solvent_mask, symmetrized
from crysplugins.dm_command import unet_mask_provider

unet = unet_mask_provider(os.environ.get("UNET_MODEL", "solvent-unet"))
sets = tuple(sys.argv[1].split(',')) if len(sys.argv) > 1 else ts.SETS
for which, src, case in ts.cases((50.0, 65.0), sets):
    refl = case.refl

    def provider(req, case=case, src=src, which=which):
        score = unet(req)
        shape = req.map.array.shape
        truth = resample(src.mask, shape) > 0.5
        s = truth.mean()
        arr = resample(np.asarray(score.array if hasattr(score, 'array') else score, dtype=np.float64), shape)
        um = solvent_mask(symmetrized(arr, refl.cell, refl.spacegroup), s)
        rho = np.asarray(req.map.array, dtype=np.float64)
        cc = float(np.corrcoef(rho.ravel(), refl.to_map(case.f_true, shape).ravel())[0, 1])
        extra = 4.0 if req.cycle < 10 else max(0.0, 4.0 * (1 - (req.cycle - 10) / 20))  # the default schedule
        row = {'set': which, 'name': case.name, 'level': case.level, 'cycle': req.cycle, 'map_cc': round(cc, 3),
               'unet': round(float((um == truth).mean()), 4)}
        for e in sorted({extra, 0.0, 2.0}):
            row[f'lv{e:g}'] = round(float((ts.local_rms_mask(case, rho, e, s) == truth).mean()), 4)
        row['lv_engine'] = row[f'lv{extra:g}']
        print(json.dumps(row), flush=True)
        return score

    res = ts.b.run_ours(case, DMSettings(ensemble_below=0), provider)
    print(json.dumps({'set': which, 'name': case.name, 'level': case.level, 'final': res['error']}), flush=True)
