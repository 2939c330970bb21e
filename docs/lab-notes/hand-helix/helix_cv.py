# Two-fold cross-validation (by PDB entry) of the shipped logit plus a weighted helix score; run from the repository root.
import hashlib, json, glob, numpy as np
rows=[json.loads(l) for f in sorted([str(__import__('pathlib').Path(__file__).resolve().parent / 'helix_dev.jsonl')]) for l in open(f)]
dev={r['id']:r for r in json.load(open('benchmarks/out/hand_pipeline_dev.json'))['rows']}
y=np.array([r['wrong_hand'] for r in rows])
ens=np.array([dev[r['id']]['fragment_phasing_hand'] for r in rows])
for key, seed in [(k, s) for k in ('h6', 'h8') for s in range(5)]:
    pdb=np.array([int(hashlib.md5((r['id'][:4]+str(seed)).encode()).hexdigest(), 16) % 2 for r in rows])
    d=np.array([r[key]['left']-r[key]['right'] for r in rows])
    tot=0
    for f in (0,1):
        tr,te=pdb!=f,pdb==f
        ws=(5,10,20,40,80)
        sc=[((ens+w*d>0)==y)[tr].sum() for w in ws]
        w=ws[int(np.argmax(sc))]
        got=((ens+w*d>0)==y)[te].sum(); tot+=got
        print(' ', key, 'fold', f, 'weight', w, 'right', got, 'of', te.sum(), '(shipped', ((ens>0)==y)[te].sum(), ')')
    print(key,'split seed',seed,'cv total',tot,'ens',((ens>0)==y).sum(),'of',len(y))
