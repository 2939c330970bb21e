"""Does the transformer's own hand tell the hand of fragment-phasing's winner?  (docs/lab-notes/hand-network.md)

Every 8th fragment of the test families of ``data_build/frag2-15`` with d_min ≥ 1.9 Å (never a benchmark fragment):
the built-in patterson-density prediction with ``hand: none`` (the network's own hand), fragment-phasing's winner
(``fragment_phasing.solve`` with that prediction as its network candidate), the winner placed and its hand read by
fragment-phasing's hand model, and, for the labels only, both aligned with the true phases.  One JSON line per
fragment in OUT; the phases in ``OUT.parent/maps``.

    OMP_NUM_THREADS=1 python docs/lab-notes/hand-network/network_hand_dev.py PART PARTS 8 OUT.jsonl
"""
import json, sys, time
from pathlib import Path
import numpy as np

from crysplugins.evaluation.compare import examples_from_dataset, true_data
from crysplugins.crystal.origin import search_origin_hand
from crysplugins.crystal.refine import observed_data
from crysplugins.crystal import io
from crysplugins.interface import Request
from crysplugins.plugins.fragment_phasing import FragmentPhasingPredictor
from crysplugins.runtime import fragment_phasing as fp

part, parts, every, out = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
offset = int(sys.argv[5]) if len(sys.argv) > 5 else 0
exs = [e for e in examples_from_dataset("data_build/frag2-15", "test") if e.d_min >= 1.9]
exs = exs[offset::every]
exs = [e for k, e in enumerate(exs) if k % parts == part]
done = set()
if out.exists():
    done = {json.loads(l)["id"] for l in out.open()}
store = out.parent / "maps"; store.mkdir(exist_ok=True)
for e in exs:
    if e.id in done:
        continue
    t0 = time.monotonic()
    refl = io.read_mtz(e.amplitudes, need=("F|I",))
    msgs = []
    cell, hkl, f = observed_data(refl, msgs)
    cell_t, hkl_t, f_t, phi_t = true_data(e)
    # truth at the observed hkl
    table = {tuple(h): p for h, p in zip(hkl_t.tolist(), phi_t.tolist())}
    phi_true = np.array([table.get(tuple(h), np.nan) for h in hkl.tolist()])
    seq = io.read_sequence(e.sequence)
    setup = fp.make_setup(cell, hkl, f, seq)
    net = FragmentPhasingPredictor._network_phases(Request({}), refl, seq, hkl, msgs)
    res = fp.solve(setup, (lambda: net) if net is not None else None)
    win = res.winner
    ok = np.isfinite(phi_true)
    inv = search_origin_hand(hkl[ok], f[ok], phi_true[ok], win.refined.phases[ok])
    placed, hand = fp.place(win.refined, sequence=seq)
    after = search_origin_hand(hkl[ok], f[ok], phi_true[ok], win.refined.phases[ok])
    rec = dict(id=e.id, n=len(e.sequence), d_min=e.d_min, winner=win.name, err=inv.phase_error,
               card_wrong=bool(after.inverted), card_logit=hand.logit, seconds=time.monotonic() - t0)
    if net is not None:
        nt = search_origin_hand(hkl[ok], f[ok], phi_true[ok], net[ok])
        same = search_origin_hand(hkl, f, win.refined.phases, net, allow_hand=False)
        oth = search_origin_hand(hkl, f, -win.refined.phases, net, allow_hand=False)
        rec.update(net_err=nt.phase_error, net_wrong=bool(nt.inverted),
                   nw_same_err=same.phase_error, nw_inv_err=oth.phase_error,
                   nw_same_score=same.score, nw_inv_score=oth.score)
    np.savez(store / f"{e.id}.npz", hkl=hkl, f=f, phi_true=phi_true, win=win.refined.phases,
             net=net if net is not None else np.zeros(0), cell=np.array(cell.parameters), seq=e.sequence)
    with out.open("a") as fh:
        fh.write(json.dumps(rec) + "\n")
    print(rec, flush=True)
