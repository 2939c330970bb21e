"""The U-net mode with settings overrides, or another U-net card, on the tuning sets (seed 1, 50° and 65°, one run
each, ensemble off), against the LV rows of the mask study (mask_oracle.json):

    OMP_NUM_THREADS=1 python docs/lab-notes/density-modification/unet_late_study.py SET [key=value ...]

SET: small, dev or lowres; keys as DMSettings' (e.g. ``mask.provider_weight_final=None``); another card with
UNET_MODEL=NAME and CRYSPLUGINS_MODELS=its folder.  Rows: unet_late_cycles.json["study"]."""
import os, sys, json
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))
import tuning_sets as ts
from crysplugins.crystal.dm import DMSettings
from crysplugins.dm_command import unet_mask_provider

which = sys.argv[1]
base = DMSettings(ensemble_below=0)
for kv in sys.argv[2:]:
    key, value = kv.split('=')
    *path, last = key.split('.')
    obj = base
    for p in path:
        obj = getattr(obj, p)
    setattr(obj, last, None if value == 'None' else float(value))
unet = unet_mask_provider(os.environ.get("UNET_MODEL", "solvent-unet"))
lv = {(r['name'], r['level']): r for r in json.load(open(Path(__file__).parent / 'mask_oracle.json'))['rows']['unet']
      if r['set'] == which}
for _, src, case in ts.cases((50.0, 65.0), (which,)):
    ref = lv[(case.name, case.level)]
    row = {'set': which, 'name': case.name, 'level': case.level, 'lv': ref['lv'], 'unet_shipped': ref['oracle'],
           'variant': ts.b.run_ours(case, base, unet)['error']}
    print(json.dumps(row), flush=True)
