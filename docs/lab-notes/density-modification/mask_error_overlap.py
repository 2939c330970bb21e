"""How often the U-net and the local-rms mask of the same starting map are wrong on the same voxels (tuning sets,
50° and 65°, seed 1): ``OMP_NUM_THREADS=1 python docs/lab-notes/density-modification/mask_error_overlap.py``.
Rows: mask_oracle.json["errcorr"];
another U-net card with UNET_MODEL=NAME (CRYSPLUGINS_MODELS=its folder): unet_lv_weighted.json."""
import os, sys, json
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))
import tuning_sets as ts
from crysplugins.dm_command import unet_mask_provider

unet = unet_mask_provider(os.environ.get("UNET_MODEL", "solvent-unet"))
for which, src, case in ts.cases((50.0, 65.0)):
    start = ts.starting_map(src, case)
    s = start.truth.mean()
    lv = ts.local_rms_mask(case, start.rho, 4.0, s)
    um = ts.unet_mask(unet, case, start, s)
    lw, uw = lv != start.truth, um != start.truth
    row = {'set': which, 'name': src.name, 'level': case.level, 'lv_acc': round(1 - lw.mean(), 4),
           'unet_acc': round(1 - uw.mean(), 4), 'p_lv_wrong': round(lw.mean(), 4),
           'p_lv_wrong_given_unet_wrong': round(lw[uw].mean(), 4)}
    print(json.dumps(row), flush=True)
