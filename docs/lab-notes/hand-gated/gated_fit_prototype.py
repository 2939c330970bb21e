import sys, numpy as np, torch, torch.nn as nn
torch.set_num_threads(1); torch.manual_seed(0)
import os
files = os.environ.get('TRAIN', 'train').split(',')
parts = [np.load(f'runs/handlocal/{f}.npz') for f in files]
tr = {k: np.concatenate([p[k] for p in parts]) for k in ('S', 'P', 'L', 'D', 'E', 'ids')}
te = np.load('runs/handlocal/test.npz')
hidden = int(sys.argv[1]) if len(sys.argv) > 1 else 32
wd = float(sys.argv[2]) if len(sys.argv) > 2 else 1e-3
epochs = int(sys.argv[3]) if len(sys.argv) > 3 else 60
mu = tr['S'].reshape(-1, tr['S'].shape[-1]).mean(0); sd = tr['S'].reshape(-1, tr['S'].shape[-1]).std(0) + 1e-6
ps = np.abs(tr['P']).reshape(-1, tr['P'].shape[-1]).mean(0) + 1e-9
ABS = os.environ.get('ABS') == '1'
def prep(d):
    S_ = (d['S'] - mu) / sd
    if ABS: S_ = np.concatenate([S_, np.abs(d['P'] / ps)], -1)
    return torch.tensor(S_, dtype=torch.float32), torch.tensor(d['P'] / ps, dtype=torch.float32)
# validation: 20 % of train entries by PDB id prefix
ent = np.array([i.split('_')[0] for i in tr['ids']]); u = np.unique(ent); rng = np.random.default_rng(0)
val_ent = set(rng.choice(u, len(u) // 5, replace=False)); val = np.array([e in val_ent for e in ent])
S, P = prep(tr); St, Pt = prep(te)
class Gate(nn.Module):
    def __init__(s, h):
        super().__init__()
        s.m = nn.Sequential(nn.Linear(S.shape[-1], h), nn.Tanh(), nn.Linear(h, P.shape[-1])) if h else None
        s.c = nn.Parameter(torch.zeros(P.shape[-1]))
    def forward(s, S, P):
        w = s.c + (s.m(S) if s.m is not None else 0)
        return (P * w).sum(-1).mean(-1)
def run(h, idx_tr, epochs):
    net = Gate(h); opt = torch.optim.Adam(net.parameters(), 3e-3, weight_decay=wd)
    n = len(idx_tr)
    for ep in range(epochs):
        perm = np.random.default_rng(ep).permutation(idx_tr)
        for b in range(0, n, 128):
            i = perm[b:b + 128]
            loss = nn.functional.softplus(-net(S[i], P[i])).mean()
            opt.zero_grad(); loss.backward(); opt.step()
    return net
def acc(net, S_, P_, mask):
    with torch.no_grad(): return float((net(S_[mask], P_[mask]) > 0).float().mean())
for h in ([int(x) for x in os.environ.get('HID', f'0,{hidden}').split(',')]):
    net = run(h, np.where(~val)[0], epochs)
    v = {L: acc(net, S, P, torch.tensor(val & (tr['L'] == L))) for L in np.unique(tr['L'])}
    print('hidden', h, 'val by length', {k: round(x, 3) for k, x in v.items()}, 'train2', round(acc(net, S, P, torch.tensor(~val & (tr['L'] == 2))), 3))
    # test: first 110 dipeptides, and 3-5
    dip = np.where(te['L'] == 2)[0]
    for e in (0, 20):
        ids110 = [i for i in dict.fromkeys(te['ids'][dip])][:110]
        m = torch.tensor(np.isin(te['ids'], ids110) & (te['E'] == e) & (te['L'] == 2))
        m35 = torch.tensor((te['L'] >= 3) & (te['E'] == e))
        print(f'  test err {e}: dipeptides {acc(net, St, Pt, m):.3f} (n {int(m.sum())}), 3-5 res {acc(net, St, Pt, m35):.3f} (n {int(m35.sum())})')
