"""Summary of polish_dev.py's output (the JSON lines named on the command line)."""
import json
import sys

import numpy as np

rows = [json.loads(line) for path in sys.argv[1:] for line in open(path)]
keys = [k for k in rows[0] if k == "winner" or k.startswith("polish")]
print(len(rows), "fragments")
for part, sel in (("all", lambda r: True), ("2-5 res", lambda r: r["n_residues"] < 6), ("6-15 res", lambda r: r["n_residues"] >= 6)):
    sub = [r for r in rows if sel(r)]
    solved = [r for r in sub if r["winner"]["error"] < 60]
    for k in keys:
        err = np.array([r[k]["error"] for r in sub])
        right = sum((r[k]["logit"] > 0) == r[k]["wrong_hand"] for r in solved)
        print(f"{part:9s} {k:10s} n {len(sub):3d} mean error {err.mean():6.2f} solved {int((err < 60).sum()):3d} "
              f"hand right on the winner-solved {right}/{len(solved)}")
