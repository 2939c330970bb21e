"""Prototype: a 3D CNN hand classifier on Cartesian-resampled fragment maps (antisymmetric by construction)."""
import sys, time, json
import numpy as np, gemmi, torch, torch.nn as nn
from crysplugins.datasets.store import open_dataset
from crysplugins.training.hand_chirality import degraded_map

BOX, STEP = 24, 0.5

def upsample(rho, f=2):
    n = rho.shape[0]; m = n * f
    F = np.fft.fftn(rho)
    G = np.zeros((m, m, m), complex)
    k = np.fft.fftfreq(n, 1.0 / n).astype(int)
    keep = np.abs(k) < n // 2
    idx = np.where(keep)[0]; tgt = k[keep] % m
    G[np.ix_(tgt, tgt, tgt)] = F[np.ix_(idx, idx, idx)]
    return np.fft.ifftn(G).real * f ** 3

def random_rotation(rng):
    q = rng.normal(size=4); q /= np.linalg.norm(q)
    a, b, c, d = q
    return np.array([[a*a+b*b-c*c-d*d, 2*(b*c-a*d), 2*(b*d+a*c)],
                     [2*(b*c+a*d), a*a-b*b+c*c-d*d, 2*(c*d-a*b)],
                     [2*(b*d-a*c), 2*(c*d+a*b), a*a-b*b-c*c+d*d]])

def box(rho_fine, cell, rng):
    g = gemmi.FloatGrid(rho_fine.astype(np.float32), gemmi.UnitCell(*cell), gemmi.SpaceGroup('P1'))
    R = random_rotation(rng) * STEP
    centre = np.array(g.unit_cell.orthogonalize(gemmi.Fractional(*rng.random(3))).tolist())
    off = centre - R @ np.full(3, (BOX - 1) / 2)
    tr = gemmi.Transform(gemmi.Mat33(R.tolist()), gemmi.Vec3(*off))
    out = np.zeros((BOX,) * 3, np.float32)
    g.interpolate_values(out, tr, order=1)
    return out

class Net(nn.Module):
    def __init__(s, w=16):
        super().__init__()
        c = lambda i, o, st=1: [nn.Conv3d(i, o, 3, st, 1), nn.BatchNorm3d(o), nn.ReLU()]
        s.f = nn.Sequential(*c(1, w), *c(w, 2*w, 2), *c(2*w, 2*w), *c(2*w, 4*w, 2), *c(4*w, 4*w), *c(4*w, 4*w),
                            nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(4*w, 1))
    def forward(s, x):
        return (s.f(x) - s.f(torch.flip(x, (2, 3, 4))))[:, 0]

def load(split, maxlen, every=1, maxn=None):
    ds = open_dataset('data_build/frag2-15'); out = []
    for sh in ds.shards(split):
        a = sh.load(); L = (a['sequence_index'] >= 0).sum(1)
        for r in range(0, sh.n, every):
            if L[r] <= maxlen:
                out.append((a['density'][r].astype(np.float64), a['cell'][r].astype(float), float(a['d_min'][r]), int(L[r])))
        if maxn and len(out) >= maxn: break
    return out

def sample(ex, err, rng):
    rho, cell, d, L = ex
    return box(upsample(degraded_map(rho, cell, d, err, rng)), cell, rng)

if __name__ == '__main__':
    torch.set_num_threads(int(sys.argv[1])); maxlen = int(sys.argv[2]); steps = int(sys.argv[3]); tag = sys.argv[4]
    rng = np.random.default_rng(0); torch.manual_seed(0)
    t0 = time.time(); train = load('train', maxlen); print('train', len(train), time.time() - t0, flush=True)
    test = [e for e in load('test', 5) if e[3] == 2][:110]
    net = Net(); opt = torch.optim.AdamW(net.parameters(), 2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 2e-3, total_steps=steps, pct_start=0.1)
    B = 32; log = open(f'runs/handcnn/{tag}.log', 'a')
    def evaluate(err, K=8):
        net.eval(); r = np.random.default_rng(1); acc = []
        with torch.no_grad():
            for ex in test:
                m = sample(ex, 0, r) if err == 0 else None
                xs = np.stack([sample(ex, err, r) for _ in range(K)])
                xs = (xs - xs.mean((1, 2, 3), keepdims=True)) / xs.std((1, 2, 3), keepdims=True)
                acc.append(net(torch.from_numpy(xs[:, None])).mean().item() > 0)
        net.train(); return float(np.mean(acc))
    for step in range(1, steps + 1):
        xs = []
        for _ in range(B):
            ex = train[rng.integers(len(train))]
            xs.append(sample(ex, float(rng.choice([0, 0, 15, 25, 35])), rng))
        x = np.stack(xs); x = (x - x.mean((1, 2, 3), keepdims=True)) / x.std((1, 2, 3), keepdims=True)
        x = torch.from_numpy(x[:, None].astype(np.float32))
        # random half shown inverted, label 0
        flip = torch.from_numpy(rng.random(B) < 0.5)
        x[flip] = torch.flip(x[flip], (2, 3, 4))
        y = (~flip).float()
        loss = nn.functional.binary_cross_entropy_with_logits(net(x), y)
        opt.zero_grad(); loss.backward(); opt.step(); sched.step()
        if step % 50 == 0:
            print(step, f'{loss.item():.3f}', f'{time.time()-t0:.0f}s', flush=True)
        if step % 500 == 0 or step == steps:
            a0 = evaluate(0); a20 = evaluate(20)
            msg = f'step {step} test dipeptides true {a0:.3f} 20deg {a20:.3f} t {time.time()-t0:.0f}'
            print(msg, flush=True); log.write(msg + '\n'); log.flush()
            torch.save(net.state_dict(), f'runs/handcnn/{tag}.pt')
