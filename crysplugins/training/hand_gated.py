"""``crysplugins train hand-chirality --true-maps --head gated``: a hand model that weighs each voxel's chirality.

Why: the linear ``fragment_hand`` sums pseudoscalar fields over the whole cell with fixed weights (uniform, ρ₊,
ρ₊²).  On long fragments that is enough (≥ 98 % right on true test maps of 6–15 residues), on dipeptides it is not
(71 %): one or two Cα centres are a small part of the cell, and the fixed weights let the rest of the map drown
them.  A *gated* head keeps the fields voxel by voxel (:func:`crysplugins.crystal.chirality.voxel_fields`: scalars
s(x) and pseudoscalars p(x) at the 512 densest voxels) and scores

    score = mean over voxels x of  Σ_k q_k(x) · w_k(z(x)),   q = p / scale,   z = [(s − μ) / σ, |q|],
    w(z) = tanh(z W₁ + b₁) W₂ + b₂,

so a small network of the voxel's rotation-invariant surroundings (density, gradient length, Hessian invariants at
five blurs, and the sizes of its pseudoscalars) decides how much each pseudoscalar counts there.  The inversion
keeps every s and |q| and negates every q, so score(inverted map) = −score(map) exactly, whatever the weights:
the two hands can never both be called right.  (On a validation fifth of the ≤ 5-residue train entries the |q|
inputs raised the dipeptides from 80 to 83 % right; a hidden width of 64 instead of 32 changed nothing.)

Data as :func:`crysplugins.training.hand_chirality.fit_true_maps`: the true densities of the train families,
each to its d_min and again with von Mises phase errors of mean 20° and 35° (``degraded_map``), in rms units;
measured on the test families only.  The fit (Adam, logistic loss, weight decay) runs in torch; the card holds the
weights, and inference is numpy (:func:`crysplugins.runtime.hand.gated_score`).  The hidden width (32) and the
weight decay were chosen on a validation fifth of the train entries (grouped by PDB entry), never on the test
families (docs/lab-notes/hand-gated.md); every fit reports that validation accuracy in its card.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Callable

import numpy as np

from crysplugins.crystal.chirality import VOXEL_FEATURE_SET, VOXEL_COUNT, VOXEL_SIGMAS, voxel_fields
from crysplugins.datasets.store import open_dataset
from crysplugins.errors import CrysError
from crysplugins.runtime.hand import gated_score
from crysplugins.runtime.models import CARD_FORMAT
from crysplugins.training.hand_chirality import (PHASE_ERRORS, _cache_key, _cached, check_true_maps_args,
                                                 degraded_true_maps, parse_phase_errors, score_metrics, write_card)

HIDDEN = 32
WEIGHT_DECAY = 1e-3
EPOCHS = 40
BATCH = 128


def gated_fields(data: str | Path, split: str, every: int, phase_errors, seed: int = 0,
                 lengths: tuple[int, int] = (2, 15), progress: Callable[[str], None] | None = None
                 ) -> dict[str, np.ndarray]:
    """:func:`voxel_fields` of every ``every``-th example's true density of ``split`` (the L hand) whose length is
    within ``lengths`` (residues), as ``degraded_map`` makes it for each mean phase error (degrees).

    Returns S (n, E, V, 25), P (n, E, V, 40) (float16 to keep a large train set in memory), n_residues (n,),
    d_min (n,), ids (n,), phase_errors (E,)."""
    def half(m: np.ndarray, cell) -> tuple[np.ndarray, np.ndarray]:
        return tuple(a.astype(np.float16) for a in voxel_fields(m, cell))

    d = degraded_true_maps(data, split, every, phase_errors, seed, half, lengths, progress)
    values = d.pop("values")
    return {"S": np.array([[f[0] for f in v] for v in values]), "P": np.array([[f[1] for f in v] for v in values]),
            **d}


def _flatten(d: dict[str, np.ndarray], rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    S, P = d["S"][rows], d["P"][rows]
    return S.reshape((-1,) + S.shape[2:]), P.reshape((-1,) + P.shape[2:])


def fit_gated(S: np.ndarray, P: np.ndarray, hidden: int, weight_decay: float, epochs: int = EPOCHS,
              seed: int = 0) -> dict[str, np.ndarray]:
    """Fit a gated head on L-hand maps' voxel fields S (n, V, 25), P (n, V, 40): logistic loss on the score
    (both hands are implied by the antisymmetry).  Returns the card's arrays (numpy)."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    flat_s, flat_p = S.reshape(-1, S.shape[-1]), P.reshape(-1, P.shape[-1])
    mean = flat_s.mean(axis=0, dtype=np.float64)
    sd = flat_s.std(axis=0, dtype=np.float64) + 1e-6
    scale = np.abs(flat_p).mean(axis=0, dtype=np.float64) + 1e-9
    p_t = torch.from_numpy((P / scale.astype(np.float32)).astype(np.float32))
    z_t = torch.cat([torch.from_numpy(((S - mean.astype(np.float32)) / sd.astype(np.float32)).astype(np.float32)),
                     p_t.abs()], dim=-1)
    gate = nn.Sequential(nn.Linear(z_t.shape[-1], hidden), nn.Tanh(), nn.Linear(hidden, P.shape[-1]))
    opt = torch.optim.Adam(gate.parameters(), 3e-3, weight_decay=weight_decay)
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        order = rng.permutation(len(S))
        for start in range(0, len(S), BATCH):
            i = torch.from_numpy(order[start:start + BATCH])
            score = (p_t[i] * gate(z_t[i])).sum(-1).mean(-1)
            loss = nn.functional.softplus(-score).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    w1, b1, w2, b2 = (t.detach().numpy().astype(np.float64) for t in
                      (gate[0].weight.T, gate[0].bias, gate[2].weight.T, gate[2].bias))
    return {"scalar_mean": mean, "scalar_scale": sd, "scale": scale, "hidden_weights": w1, "hidden_bias": b1,
            "gate_weights": w2, "gate_bias": b2}


def validation_rows(ids: np.ndarray, fraction: float = 0.2, seed: int = 0) -> np.ndarray:
    """A boolean mask of the train maps whose PDB entry (the id's prefix) is in a random ``fraction`` of the
    entries: the validation set the head is chosen on."""
    entries = np.array([str(i).split("_")[0] for i in ids])
    unique = np.unique(entries)
    if len(unique) < 2:
        raise CrysError("The gated hand model needs training maps from at least 2 structures.")
    held = set(np.random.default_rng(seed).choice(unique, max(1, int(len(unique) * fraction)), replace=False))
    return np.array([e in held for e in entries])


def validate_gated(train: dict[str, np.ndarray], hidden: int = HIDDEN, weight_decay: float = WEIGHT_DECAY,
                   seed: int = 0) -> dict[str, Any]:
    """Accuracy on the validation entries (:func:`validation_rows`) of a head fitted on the other train entries,
    overall and by length (all phase errors together): how well the head generalises to unseen chains."""
    val = validation_rows(train["ids"], seed=seed)
    params = fit_gated(*_flatten(train, np.where(~val)[0]), hidden, weight_decay, seed=seed)
    right = gated_score(*_flatten(train, np.where(val)[0]), params) > 0
    lengths = np.repeat(train["n_residues"][val], train["S"].shape[1])
    groups = {f"{lo}-{hi}": (lengths >= lo) & (lengths <= hi) for lo, hi in ((2, 2), (3, 5), (6, 10), (11, 15))}
    return {"val_maps": int(len(right)), "val_accuracy": float(right.mean()),
            "by_length": {name: float(right[m].mean()) for name, m in groups.items() if m.any()}}


def gated_card_fields(params: dict[str, np.ndarray]) -> dict[str, Any]:
    """The card entries of a fitted gated head (lists for JSON)."""
    return {"feature_set": VOXEL_FEATURE_SET, "head": "gated", "sigmas": list(VOXEL_SIGMAS),
            "voxel_count": VOXEL_COUNT, **{k: np.asarray(v).tolist() for k, v in params.items()}}


def fit_gated_true_maps(data: str | Path, out: str | Path, every: int = 6, test_every: int = 6, seed: int = 0,
                        progress: Callable[[str], None] | None = None, every_short: int = 1,
                        phase_errors: tuple[float, ...] = PHASE_ERRORS) -> dict[str, Any]:
    """Fit the gated hand card on true train-family maps (every ``every_short``-th map of 2–5 residues, where the
    hand is hardest, and every ``every``-th longer one; each as :func:`degraded_map` makes it at each mean phase
    error of ``phase_errors``, degrees: by default the true map and 20° and 35°), report its
    validation accuracy (:func:`validate_gated`) and measure it on every ``test_every``-th test-family map; writes
    ``out/hand_chirality.json`` (returned).  Fields are cached in ``out`` by a key of the dataset and the rows."""
    ds = open_dataset(data)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)

    def fields(split: str, step: int, lengths: tuple[int, int], part_seed: int) -> dict[str, np.ndarray]:
        key = _cache_key([str(ds.root.resolve()), split, step, list(lengths), list(phase_errors), part_seed,
                          VOXEL_FEATURE_SET, list(VOXEL_SIGMAS), VOXEL_COUNT])
        return _cached(out / f"fields-{split}-{key}.npz",
                       lambda: gated_fields(ds.root, split, step, phase_errors, part_seed, lengths, progress))

    parts = []
    for step, lengths, part_seed in ((every_short, (2, 5), seed), (every, (6, 15), seed + 1)):
        try:
            parts.append(fields("train", step, lengths, part_seed))
        except CrysError:  # a dataset of short fragments only (or of long ones only) has one part
            continue
    if not parts:
        raise CrysError(f"No train examples of 2-15 residues were selected from {ds.root}.")
    train = {k: np.concatenate([p[k] for p in parts]) for k in parts[0] if k != "phase_errors"}
    train["phase_errors"] = parts[0]["phase_errors"]
    test = fields("test", test_every, (2, 15), seed + 2)
    validation = validate_gated(train, seed=seed)
    if progress:
        progress(f"validation: {validation}")
    params = fit_gated(*_flatten(train, np.arange(len(train["ids"]))), HIDDEN, WEIGHT_DECAY, seed=seed)
    scores = np.stack([gated_score(test["S"][:, j], test["P"][:, j], params)
                       for j in range(test["S"].shape[1])], axis=1)
    card = {
        "format": CARD_FORMAT, "task": "hand-chirality", "name": out.name,
        "description": "Hand (L vs D) of a solved fragment density map (1.5-2.5 Å, 2-15 residues) from per-voxel "
                       "pseudoscalars weighed by a small network of each voxel's scalars; score > 0 keeps the map, "
                       "< 0 inverts it through the cell centre.  Meaningless on an unsolved map.",
        "input": "refined", **gated_card_fields(params),
        "training": {"dataset": str(ds.root), "maps": "true densities of the train families to each example's "
                     "d_min, without F(000), rms units, with von Mises phase errors of these means (degrees)",
                     "phase_errors": list(phase_errors),
                     "rows": f"every {every_short}th map of 2-5 residues, every {every}th of 6-15", "n_train_maps": int(len(train["ids"])), "hidden": HIDDEN,
                     "weight_decay": WEIGHT_DECAY, "epochs": EPOCHS, "seed": seed, "validation": validation},
        "metrics": {"test": {"maps": f"every {test_every}th test-family example of {ds.root}",
                             **score_metrics(scores, test)}},
    }
    return write_card(card, out)


def run_cli(args: argparse.Namespace) -> int:
    """``crysplugins train hand-chirality --true-maps --head gated ...`` (dispatched by
    :mod:`crysplugins.training.cli`; the other hand-chirality fits are :func:`hand_chirality.run_cli`)."""
    if not args.true_maps or args.average or args.pipeline_mtz or args.predictor_run:
        raise CrysError("train hand-chirality --head gated is fitted on true maps only; give it with --true-maps "
                        "and without --average, --pipeline-mtz or --predictor-run.")
    check_true_maps_args(args)
    say = None if args.quiet else (lambda m: print(m, flush=True))
    card = fit_gated_true_maps(args.data, args.out, every=args.every, test_every=args.test_every,
                               seed=args.seed or 0, progress=say, phase_errors=parse_phase_errors(args.phase_errors))
    print(json.dumps({"card": str(Path(args.out) / "hand_chirality.json"), "head": card["head"],
                      "validation": card["training"]["validation"], "test": card["metrics"]["test"]}, indent=1))
    return 0
