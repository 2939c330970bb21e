"""Lab check: does a gated hand head fitted also on real solved maps call their hand better?

Real maps: fragment-phasing winners of train-family fragments (benchmarks/hand_pipeline_dev.py collect;
data_build/hand_pipeline_dev), solved ones only (< 60°), each put on the L hand by its label.  Simulated maps:
the cached voxel fields of a `train hand-chirality --true-maps --head gated` run (--sim-run; levels chosen by
--levels, indices into its phase errors).  Two folds of the real maps, grouped by PDB entry: a head is fitted
on the simulated maps plus the real maps of one fold (repeated --repeat times) and its calls are counted on the
other fold, beside the shipped card's.  Train families only; no test family is read.

    OMP_NUM_THREADS=2 python docs/lab-notes/hand-realistic/realistic_fit_dev.py --sim-run runs/fragment_hand_gated50
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "benchmarks"))

from hand_pipeline_dev import load_maps  # noqa: E402

from crysplugins.crystal.chirality import voxel_fields  # noqa: E402
from crysplugins.runtime.hand import gated_score, hand_logits, rms_normalised  # noqa: E402
from crysplugins.training.hand_gated import fit_gated  # noqa: E402


def real_fields(cache: Path) -> dict[str, np.ndarray]:
    """Voxel fields of every solved real map on its L hand (S, P), with ids, lengths, d_min and phase error."""
    if cache.is_file():
        with np.load(cache, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    S, P, ids, n_res, d_min, err, base = [], [], [], [], [], [], []
    for m in load_maps():
        if float(m["phase_error"]) >= 60:
            continue
        s, p = voxel_fields(rms_normalised(m["map"]), m["cell"])
        S.append(s)
        P.append(-p if bool(m["wrong_hand"]) else p)  # the inverted map's pseudoscalars: its L hand
        ids.append(str(m["id"]))
        n_res.append(int(m["n_residues"]))
        d_min.append(float(m["d_min"]))
        err.append(float(m["phase_error"]))
        logit = float(hand_logits(m["map"][None].astype(np.float64), "fragment_hand_gated", cells=[m["cell"]])[0])
        base.append((logit > 0) == bool(m["wrong_hand"]))
    d = {"S": np.array(S, np.float16), "P": np.array(P, np.float16), "ids": np.array(ids),
         "n_residues": np.array(n_res), "d_min": np.array(d_min), "phase_error": np.array(err),
         "shipped_right": np.array(base)}
    np.savez(cache, **d)
    return d


def sim_fields(run: Path, levels: list[int]) -> tuple[np.ndarray, np.ndarray]:
    S, P = [], []
    for path in sorted(run.glob("fields-train-*.npz")):
        with np.load(path, allow_pickle=False) as z:
            S.append(z["S"][:, levels].reshape((-1,) + z["S"].shape[2:]))
            P.append(z["P"][:, levels].reshape((-1,) + z["P"].shape[2:]))
    return np.concatenate(S), np.concatenate(P)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--sim-run", default=str(REPO / "runs" / "fragment_hand_gated50"))
    p.add_argument("--levels", default="0,1,2", help="indices of the simulated phase errors used")
    p.add_argument("--repeat", type=int, default=4)
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--out", default=str(REPO / "docs" / "lab-notes" / "hand-realistic" / "realistic_fit_dev.json"))
    a = p.parse_args()
    real = real_fields(REPO / "runs" / "hand_real_fields.npz")
    sim_s, sim_p = sim_fields(Path(a.sim_run), [int(x) for x in a.levels.split(",")])
    entries = np.array([i.split("_")[0] for i in real["ids"]])
    unique = np.unique(entries)
    fold_of = dict(zip(unique, np.random.default_rng(0).permutation(len(unique)) % 2))
    fold = np.array([fold_of[e] for e in entries])
    result = {"real_maps": int(len(entries)), "simulated_maps": int(len(sim_s)), "levels": a.levels,
              "repeat": a.repeat, "folds": []}
    for f in (0, 1):
        train, test = fold != f, fold == f
        S = np.concatenate([sim_s] + [real["S"][train]] * a.repeat)
        P = np.concatenate([sim_p] + [real["P"][train]] * a.repeat)
        sim_only = fit_gated(sim_s, sim_p, 32, 1e-3, epochs=a.epochs)
        both = fit_gated(S, P, 32, 1e-3, epochs=a.epochs)
        row = {"fold": f, "n": int(test.sum()), "shipped_right": int(real["shipped_right"][test].sum()),
               "sim_only_right": int((gated_score(real["S"][test], real["P"][test], sim_only) > 0).sum()),
               "with_real_right": int((gated_score(real["S"][test], real["P"][test], both) > 0).sum())}
        result["folds"].append(row)
        print(json.dumps(row), flush=True)
    Path(a.out).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
