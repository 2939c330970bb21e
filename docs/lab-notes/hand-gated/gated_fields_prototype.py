"""Per-voxel scalar and pseudoscalar fields of fragment maps (prototype of a locally gated hand score)."""
import sys, time
import numpy as np
from crysplugins.datasets.store import open_dataset
from crysplugins.training.hand_chirality import degraded_map

# The prototype's own copy of the fields became crysplugins.crystal.chirality.voxel_fields (bit for bit the same
# numbers: blurs 0.3-1.2 A, the 512 densest voxels), so the package function is used here.
from crysplugins.crystal.chirality import voxel_fields

def collect(split, maxlen, every, errors, maxn, out, seed=0, minlen=2, offset=0):
    ds = open_dataset('data_build/frag2-15'); rng = np.random.default_rng(seed)
    Ss, Ps, L, D, E, ids = [], [], [], [], [], []
    t0 = time.time()
    for sh in ds.shards(split):
        a = sh.load(); lens = (a['sequence_index'] >= 0).sum(1)
        for r in range(offset, sh.n, every):
            if not minlen <= lens[r] <= maxlen: continue
            cell, d = a['cell'][r].astype(float), float(a['d_min'][r])
            for e in errors:
                s_, p_ = voxel_fields(degraded_map(a['density'][r].astype(float), cell, d, e, rng), cell)
                Ss.append(s_); Ps.append(p_); L.append(lens[r]); D.append(d); E.append(e); ids.append(a['ids'][r])
        if len(set(ids)) >= maxn: break
    print(split, len(Ss), f'{time.time()-t0:.0f}s', flush=True)
    np.savez(out, S=np.stack(Ss), P=np.stack(Ps), L=np.array(L), D=np.array(D), E=np.array(E), ids=np.array(ids))

if __name__ == '__main__':
    split, maxlen, every, maxn, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    errors = [float(x) for x in sys.argv[6].split(',')]
    collect(split, maxlen, every, errors, maxn, out, seed=int(sys.argv[7]), minlen=int(sys.argv[8]), offset=int(sys.argv[9]))
