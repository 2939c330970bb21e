# Analysis of candidates_dev.jsonl (written by candidates_dev.py): the hand vote of fragment-phasing's candidates.
import json, glob, numpy as np, itertools
rows=[json.loads(l) for f in sorted(glob.glob(str(__import__('pathlib').Path(__file__).resolve().parent / 'candidates_dev.jsonl'))) for l in open(f)]
def right(logit, wrong): return bool((logit>0)==wrong)
data=[]
for r in rows:
    c=r['candidates']; w=c[r['best']]
    if w['error']>=60: continue
    L=np.array([(-cj['logit'] if cj['inverted_to_winner'] else cj['logit']) for cj in c])
    tw=np.array([cj['to_winner'] for cj in c]); cc=np.array([cj['dm_cc'] for cj in c]); pr=np.array([cj['probability'] for cj in c])
    cons=np.array(['consensus' in cj['name'] for cj in c])
    data.append(dict(id=r['id'],n=r['n_residues'],d=r['d_min'],wrong=w['wrong_hand'],L=L,tw=tw,cc=cc,pr=pr,cons=cons,best=r['best'],err=w['error']))
print('maps',len(data),'winner right',sum(right(x['L'][x['best']],x['wrong']) for x in data))
def ev(fn):
    ok=[right(fn(x),x['wrong']) for x in data]
    big=[o for o,x in zip(ok,data) if x['n']>=6]; sm=[o for o,x in zip(ok,data) if x['n']<6]
    return sum(ok), sum(sm), len(sm), sum(big), len(big)
print('winner', ev(lambda x: x['L'][x['best']]))
for thr in (20,30,40,50,60,90):
    print('mean thr',thr, ev(lambda x: x['L'][x['tw']<thr].mean()))
    print('  w=pr thr',thr, ev(lambda x: (x['L']*x['pr'])[x['tw']<thr].sum()))
    print('  winner + 0.5*others thr',thr, ev(lambda x: x['L'][x['best']]+0.5*x['L'][(x['tw']<thr)&(x['tw']>0.01)].sum()))
    print('  w=(1-tw/90) thr',thr, ev(lambda x: (x['L']*np.clip(1-x['tw']/90,0,1))[x['tw']<thr].sum()))
print('winner+consensus', ev(lambda x: x['L'][x['best']]+ (x['L'][x['cons']].sum() if x['cons'].any() and not x['cons'][x['best']] else 0)))
