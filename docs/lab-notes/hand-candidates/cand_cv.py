# Two-fold cross-validation (by PDB entry) of the vote rules of cand_ana2.py.
import json, glob, numpy as np
exec(open(str(__import__('pathlib').Path(__file__).resolve().parent / 'cand_ana2.py')).read().split("print('maps'")[0])
rules={}
for thr in (30,40,50,60,90):
    rules[('mean',thr)]=lambda x,thr=thr: x['L'][x['tw']<thr].mean()
    rules[('lin',thr)]=lambda x,thr=thr: (x['L']*np.clip(1-x['tw']/90,0,1))[x['tw']<thr].sum()
    rules[('half',thr)]=lambda x,thr=thr: x['L'][x['best']]+0.5*x['L'][(x['tw']<thr)&(x['tw']>0.01)].sum()
rules[('winner',0)]=lambda x: x['L'][x['best']]
def right(l,w): return (l>0)==w

for seed in range(3):
    rng=np.random.default_rng(seed); ids=sorted(set(x['id'][:4] for x in data)); f={p:rng.integers(2) for p in ids}
    fold=np.array([f[x['id'][:4]] for x in data])
    tot=0; base=0
    for k in (0,1):
        tr=[x for x,fo in zip(data,fold) if fo!=k]; te=[x for x,fo in zip(data,fold) if fo==k]
        best=max(rules, key=lambda r: sum(right(rules[r](x),x['wrong']) for x in tr))
        tot+=sum(right(rules[best](x),x['wrong']) for x in te); base+=sum(right(x['L'][x['best']],x['wrong']) for x in te)
        print(' seed',seed,'fold',k,'chosen',best)
    print('cv',tot,'winner',base,'of',len(data))
for r in (('lin',90),('lin',60),('half',60),('mean',50)):
    print(r, sum(right(rules[r](x),x['wrong']) for x in data))
