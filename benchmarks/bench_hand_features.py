"""How far the pseudoscalar hand features go: richer hand models on the cached features.

``crysplugins train hand-chirality`` caches, per split, the 208 chirality features of every example's map
(``features-<split>-<key>.npz``: X, y = 1 when the map as predicted is the better hand, the Pearson of both
hands, ids).  This script refits hand models on those caches — no prediction is rerun — and reports hand
accuracy and mean Pearson with the chosen hand on the test rows (eq. 7; the test rows are the 25 % of the
cluster-held-out test split that the hand model's card reports):

* ``linear``          the shipped model's form (intercept-free logistic, :func:`fit_logistic`), penalty 1e-3;
* ``linear+pred``     the same on the refined map's and the raw prediction's features side by side
                      (needs ``--prediction-run``, a hand-chirality run with ``--hand-input prediction``);
* ``linear+seq``      map features plus their products with the features of the sequence's ideal L residues
                      (the dataset's ``partial.npz`` boxes), still antisymmetric;
* ``mlp-H``           an antisymmetric MLP g(x) − g(−x) with H tanh units (torch, AdamW, 100 epochs);
* a learning curve of ``linear`` on 25 / 50 / 100 % of the training rows (3 draws each).

    OMP_NUM_THREADS=1 python benchmarks/bench_hand_features.py --run runs/hand_chirality_rec1_refined \
        --prediction-run runs/hand_chirality_rec1 --data data_build/dipeptide --json runs/hand_features.json

Reads the dataset built from ../shared/corpus (for sequences and residue boxes) and the runs' caches.
"""
from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import gemmi
import numpy as np

from crysplugins.crystal.chirality import pseudoscalar_features
from crysplugins.training.hand_chirality import evaluate, fit_logistic


def load_cache(run: Path, split: str) -> dict[str, np.ndarray]:
    files = sorted(run.glob(f"features-{split}-*.npz"))
    if len(files) != 1:
        raise SystemExit(f"{run} should hold exactly one features-{split}-*.npz cache (found {len(files)}).")
    with np.load(files[0], allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def sequence_features(data: Path, ids: np.ndarray, sigmas: list[float]) -> np.ndarray:
    """Sum over each example's residues of the features of the ideal L residue box (partial.npz)."""
    meta = json.loads((data / "meta.json").read_text())
    with np.load(data / "partial.npz") as z:
        boxes = z["boxes"]
    length = meta["partial_box"] * meta["partial_spacing"]
    cell = gemmi.UnitCell(length, length, length, 90, 90, 90)
    per_type = {t: pseudoscalar_features(boxes[i].astype(np.float64), cell, sigmas)
                for i, t in enumerate(meta["residue_types"])}
    with open(data / "index.tsv") as fh:
        seq = {r["id"]: r["sequence"] for r in csv.DictReader(fh, delimiter="\t")}
    return np.stack([sum(per_type[c] for c in seq[str(i)]) for i in ids])


def fit_and_score(train: dict, test: dict, X: np.ndarray, T: np.ndarray, lam: float = 1e-3) -> dict:
    w, scale = fit_logistic(X, train["y"], lam)
    return {"train": evaluate((X / scale) @ w, train), "test": evaluate((T / scale) @ w, test)}


def antisymmetric_mlp(train: dict, test: dict, X: np.ndarray, T: np.ndarray, hidden: int, epochs: int = 100,
                      seed: int = 0) -> dict:
    import torch

    torch.manual_seed(seed)
    scale = np.abs(X).mean(axis=0) + 1e-12
    xt = torch.tensor(X / scale, dtype=torch.float32)
    tt = torch.tensor(T / scale, dtype=torch.float32)
    yt = torch.tensor(train["y"], dtype=torch.float32)
    g = torch.nn.Sequential(torch.nn.Linear(X.shape[1], hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, 1))
    opt = torch.optim.AdamW(g.parameters(), lr=1e-3, weight_decay=1e-2)
    for _ in range(epochs):
        for b in torch.randperm(len(xt)).split(256):
            z = (g(xt[b]) - g(-xt[b])).squeeze(1)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(z, yt[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        s_train = (g(xt) - g(-xt)).squeeze(1).numpy()
        s_test = (g(tt) - g(-tt)).squeeze(1).numpy()
    return {"train": evaluate(s_train, train), "test": evaluate(s_test, test)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="hand-chirality run (its card and feature caches)")
    ap.add_argument("--prediction-run", help="a second run on the same rows with --hand-input prediction")
    ap.add_argument("--data", default="data_build/dipeptide")
    ap.add_argument("--json", required=True)
    args = ap.parse_args(argv)
    run = Path(args.run)
    card = json.loads((run / "hand_chirality.json").read_text())
    train, test = load_cache(run, "train"), load_cache(run, "test")
    out: dict = {"run": str(run), "n_train": int(len(train["y"])), "n_test": int(len(test["y"]))}
    out["linear"] = fit_and_score(train, test, train["X"], test["X"])
    if args.prediction_run:
        ptrain, ptest = load_cache(Path(args.prediction_run), "train"), load_cache(Path(args.prediction_run), "test")
        if not (np.array_equal(ptrain["ids"], train["ids"]) and np.array_equal(ptest["ids"], test["ids"])):
            raise SystemExit("The two runs' caches hold different rows.")
        out["linear+pred"] = fit_and_score(train, test, np.hstack([train["X"], ptrain["X"]]),
                                           np.hstack([test["X"], ptest["X"]]))
    sigmas = [float(s) for s in card["sigmas"]]
    s_train = sequence_features(Path(args.data), train["ids"], sigmas)
    s_test = sequence_features(Path(args.data), test["ids"], sigmas)
    s_scale = np.sqrt((s_train ** 2).mean(axis=0)) + 1e-12
    out["linear+seq"] = fit_and_score(train, test, np.hstack([train["X"], train["X"] * s_train / s_scale]),
                                      np.hstack([test["X"], test["X"] * s_test / s_scale]))
    for hidden in (32, 128):
        out[f"mlp-{hidden}"] = antisymmetric_mlp(train, test, train["X"], test["X"], hidden)
    rng = np.random.default_rng(0)
    curve = []
    for frac in (0.25, 0.5, 1.0):
        scores = []
        for _ in range(3 if frac < 1 else 1):
            idx = rng.permutation(len(train["y"]))[:int(frac * len(train["y"]))]
            part = {k: v[idx] for k, v in train.items()}
            scores.append(fit_and_score(part, test, part["X"], test["X"])["test"])
        curve.append({"fraction": frac, "n": int(frac * len(train["y"])),
                      "hand_accuracy": float(np.mean([s["hand_accuracy"] for s in scores])),
                      "pearson_chosen_hand": float(np.mean([s["pearson_chosen_hand"] for s in scores]))})
    out["learning_curve"] = curve
    Path(args.json).write_text(json.dumps(out, indent=1))
    for name in [k for k in out if isinstance(out[k], dict) and "test" in out[k]]:
        tr, te = out[name]["train"], out[name]["test"]
        print(f"{name:12s} train accuracy {tr['hand_accuracy']:.3f}  test accuracy {te['hand_accuracy']:.3f}  "
              f"test Pearson chosen hand {te['pearson_chosen_hand']:.4f} (better hand {te['pearson_better_hand']:.4f})")
    for row in curve:
        print(f"learning curve: {row['n']} rows  test accuracy {row['hand_accuracy']:.3f}  "
              f"Pearson {row['pearson_chosen_hand']:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
