import sys, numpy as np
rows = list(np.load(sys.argv[1], allow_pickle=True))
def st(r, M=5): f = r['fits'][0]; return (f[np.argsort(-f.max(1))[:M]] @ [1, -1]).sum()
print('| phase error | stratum | n | fragment_hand | stereo (M=5) | combined |')
for e in (0.0, 20.0):
  for name, lo, hi, dlo, dhi in (('all',2,15,0,9),('2 res',2,2,0,9),('3-5 res',3,5,0,9),('6-15 res',6,15,0,9),('<=5 res, d<2.0',2,5,0,2.0),('<=5 res, d>=2.0',2,5,2.0,9)):
    sel=[r for r in rows if r['err']==e and lo<=r['nres']<=hi and dlo<=r['d']<dhi]
    if not sel: continue
    s=np.array([st(r) for r in sel]); b=np.array([r['base'] for r in sel])
    print(f"| {e:g}° | {name} | {len(sel)} | {100*(b>0).mean():.1f} % | {100*(s>0).mean():.1f} % | {100*((b+0.02*s)>0).mean():.1f} % |")
