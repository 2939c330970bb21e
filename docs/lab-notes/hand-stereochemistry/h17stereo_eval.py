import sys, time, numpy as np
from crysplugins.datasets.store import open_dataset
from crysplugins.training.hand_chirality import degraded_map
from h17stereo_prototype import site_fits, site_votes, TORSIONS as TT1
TT2 = TT1 + ((-60.0, -30.0), (-80.0, 80.0), (-150.0, 120.0), (-100.0, 170.0))
from crysplugins.runtime.hand import hand_logits
split, every, maxn, errs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), [float(e) for e in sys.argv[4].split(',')]
out = sys.argv[5]; maxres = int(sys.argv[6]) if len(sys.argv) > 6 else 99
ds = open_dataset('data_build/frag2-15'); rng = np.random.default_rng(1)
rows = []; t = []
k = 0
for shard in ds.shards(split):
    a = shard.load()
    for r in range(0, shard.n, every):
        nres = int((a['sequence_index'][r] >= 0).sum())
        if nres > maxres: continue
        cell, d = a['cell'][r], float(a['d_min'][r])
        for e in errs:
            m = degraded_map(a['density'][r], cell, d, e, rng)
            t0 = time.perf_counter(); f = np.stack([site_fits(m, cell, n_sites=60, n_rotations=1000, stride=2, variants=True)]); t.append(time.perf_counter() - t0)
            base = -float(hand_logits(m[None], 'fragment_hand', cells=[cell])[0])
            rows.append(dict(nres=nres, d=d, err=e, fits=f, base=base))
        k += 1
        if k >= maxn: break
    if k >= maxn: break
np.save(out, rows, allow_pickle=True)
print('n', len(rows), 'median s', np.median(t))
