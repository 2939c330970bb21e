"""Replay of an agreement stop on the stored development candidates (data_build/consensus_dev; not adopted).

The search stops at the first candidate that agrees with an earlier one (origin/hand-invariant phase difference
below A degrees, both DM CCs at least C) or reaches the stopping CC (0.98 from 2.0 Å); the winner is the highest
DM CC made.  Printed: candidates made, successes lost against the full set, mean change of the winner's error,
and the wrong-wrong pairs that agree within 60°.

    .venv-test/bin/python docs/lab-notes/fragment-phasing/agreement_stop_dev.py
"""
from pathlib import Path

import numpy as np

from crysplugins.crystal.origin import search_origin_hand

STORE = Path(__file__).resolve().parents[3] / "data_build" / "consensus_dev"


def load() -> list[dict]:
    frags = []
    for f in sorted(STORE.glob("*.npz")):
        z = np.load(f)
        n = len(z["dm_cc"])
        dist = np.full((n, n), np.inf)
        for i in range(n):
            for j in range(i + 1, n):
                dist[i, j] = dist[j, i] = search_origin_hand(z["hkl"], z["f"], z["phases"][i], z["phases"][j]).phase_error
        frags.append({"d": float(f.name.split("__")[0].split("_")[1].rstrip("A")), "cc": z["dm_cc"],
                      "err": z["errors"], "dist": dist})
    return frags


def main() -> None:
    frags = load()
    pairs = [(f["dist"][i, j], min(f["cc"][i], f["cc"][j])) for f in frags if f["d"] >= 1.75
             for i in range(len(f["cc"])) for j in range(i + 1, len(f["cc"])) if f["err"][i] >= 60 <= f["err"][j]]
    close = sorted(p for p in pairs if p[0] < 60)
    print(f"wrong-wrong pairs within 60°: {len(close)} of {len(pairs)}; "
          f"closest {close[0][0]:.1f}° (DM CC {close[0][1]:.3f}); at DM CC ≥ 0.93 closest "
          f"{min(p[0] for p in close if p[1] >= 0.93):.1f}°")
    for a in (30, 40, 45, 50, 55):
        for c in (0.0, 0.9, 0.93):
            made = lost = 0
            change = []
            for f in frags:
                cc, err, n = f["cc"], f["err"], len(f["cc"])
                stop = 0.999 if f["d"] < 1.75 else 0.98
                k = next((j + 1 for j in range(n) if cc[j] >= stop or (f["d"] >= 1.75 and any(
                    f["dist"][i, j] < a and min(cc[i], cc[j]) >= c for i in range(j)))), n)
                w, full = int(np.argmax(cc[:k])), int(np.argmax(cc))
                made += k
                lost += err[full] < 60 <= err[w]
                change.append(err[w] - err[full])
            print(f"A {a}° C {c}: {made} of {sum(len(f['cc']) for f in frags)} made, {lost} lost, "
                  f"mean error change {np.mean(change):+.2f}°")


if __name__ == "__main__":
    main()
