"""Are the mask errors small islands?  The U-net and local-rms masks of the starting maps (tuning sets, 50° and 65°,
seed 1; both cut at the true solvent fraction), their protein regions split into connected pieces across the cell's
edges (scipy, a study-only dependency): ``OMP_NUM_THREADS=1 python docs/lab-notes/density-modification/mask_islands.py``.
Rows: unet_late_cycles.json["islands"]."""
import os, sys, json
from pathlib import Path
import numpy as np
from scipy import ndimage
sys.path.insert(0, str(Path(__file__).parent))
import tuning_sets as ts
from crysplugins.dm_command import unet_mask_provider


def periodic_label(m):
    """Connected pieces of ``m`` (face neighbours) joined across the periodic cell's faces."""
    lab, n = ndimage.label(m)
    parent = np.arange(n + 1)

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x
    for ax in range(3):
        a, z = np.take(lab, 0, axis=ax), np.take(lab, -1, axis=ax)
        both = (a > 0) & (z > 0)
        for p, q in set(zip(a[both].tolist(), z[both].tolist())):
            rp, rq = find(p), find(q)
            if rp != rq:
                parent[max(rp, rq)] = min(rp, rq)
    return np.array([find(i) for i in range(n + 1)])[lab]


unet = unet_mask_provider(os.environ.get("UNET_MODEL", "solvent-unet"))
for which, src, case in ts.cases((50.0, 65.0)):
    start = ts.starting_map(src, case)
    truth, s = start.truth, start.truth.mean()
    masks = {'true': truth, 'unet': ts.unet_mask(unet, case, start, s), 'lv': ts.local_rms_mask(case, start.rho, 4.0, s)}
    row = {'set': which, 'name': src.name, 'level': case.level}
    for tag, m in masks.items():
        lab = periodic_label(~m)
        ids, cnt = np.unique(lab[lab > 0], return_counts=True)
        frac = cnt / cnt.sum()
        row[tag + '_ncomp'], row[tag + '_big'] = int(len(cnt)), round(float(frac.max()), 3)
        if tag == 'true':
            continue
        isl = np.isin(lab, ids[frac < 0.05 * frac.max()])  # islands: < 5 % of the largest protein piece
        row[tag + '_island_vox'] = round(float(isl.mean()), 4)
        row[tag + '_island_truly_solvent'] = round(float(truth[isl].mean()) if isl.any() else float('nan'), 3)
        row[tag + '_acc'] = round(float((m == truth).mean()), 4)
        row[tag + '_acc_noisl'] = round(float(((m | isl) == truth).mean()), 4)
    print(json.dumps(row), flush=True)
