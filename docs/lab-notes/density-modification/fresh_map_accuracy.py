"""U-net and local-rms accuracy on fresh simulated phasing maps of low phase error (what late DM cycles see; tuning
sets, seed 1): ``OMP_NUM_THREADS=1 python docs/lab-notes/density-modification/fresh_map_accuracy.py 15,25,35,50``.
lvX: radius d_min + X Å; start: the |F|-weighted start error.  Rows: unet_late_cycles.json["fresh_maps"]."""
import os, sys, json
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))
import tuning_sets as ts
from crysplugins.dm_command import unet_mask_provider

unet = unet_mask_provider(os.environ.get("UNET_MODEL", "solvent-unet"))
for which, src, case in ts.cases(tuple(float(x) for x in sys.argv[1].split(','))):
    start = ts.starting_map(src, case)
    s = start.truth.mean()
    row = {'set': which, 'name': src.name, 'level': case.level, 'start': round(case.start_error, 2)}
    for extra in (0.0, 1.0, 2.0, 4.0):
        row[f'lv{extra:g}'] = round(float((ts.local_rms_mask(case, start.rho, extra, s) == start.truth).mean()), 4)
    row['unet'] = round(float((ts.unet_mask(unet, case, start, s) == start.truth).mean()), 4)
    print(json.dumps(row), flush=True)
