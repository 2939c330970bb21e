# Helicity (share of residues with alpha phi/psi) of each development fragment, from the corpus model; run from the repository root.
import json, glob, gemmi, numpy as np, sys
sys.path.insert(0,'.')
from crysplugins.datasets.fragments import protein_chains
ids=sorted(set(json.loads(l)['id'] for f in [str(__import__('pathlib').Path(__file__).resolve().parent / 'helix_dev.jsonl')] for l in open(f)))
out={}
cache={}
for i in ids:
    pdb, ent, start, L, d = i.split('_'); start=int(start); L=int(L[1:])
    if pdb not in cache:
        st=gemmi.read_structure(f'../shared/corpus/structures/{pdb}.cif.gz'); st.setup_entities(); cache[pdb]=st
    st=cache[pdb]
    for cname, eid, residues in protein_chains(st):
        if str(eid)!=ent: continue
        win=residues[start:start+L]
        hel=0
        for k in range(1,len(win)-1):
            phi,psi=np.degrees(gemmi.calculate_phi_psi(win[k-1],win[k],win[k+1]))
            if -100<phi<-30 and -80<psi<-10: hel+=1
        out[i]=hel/max(1,L-2); break
json.dump(out,open('docs/lab-notes/hand-helix/helicity.json','w'))
print(len(out), np.mean(list(out.values())), sum(v>0.5 for v in out.values()))
