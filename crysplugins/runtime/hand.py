"""Choose the hand of a predicted fragment density (numpy + onnxruntime; no torch).

A Patterson map cannot tell a structure from its inverse through the cell centre (RecCrysFormer paper
000, section 3: the Patterson map is centrosymmetric; appendix B puts the centre of mass at the cell
centre).  A recycled or hand-invariant RecCrysFormer predicts one of the two hands; the hand model of its
card (``card["hand_model"]``) says whether the map holds L-amino acids (keep it) or D-amino acids (invert
it).  Four kinds of hand model, told apart by their card's ``task``:

* ``hand-chirality`` (shipped): a linear score of rotation-invariant pseudoscalar features
  (:mod:`crysplugins.crystal.chirality`, fitted by :mod:`crysplugins.training.hand_chirality`), or a ``gated``
  head that weighs per-voxel pseudoscalars by a small network of the voxel's scalars (fitted by
  :mod:`crysplugins.training.hand_gated`); numpy only, the weights are in the card.  It needs each map's cell.
* ``hand-classifier``: an antisymmetric 3-D CNN exported to ONNX (:mod:`crysplugins.training.nets.hand_classifier`).
* ``hand-ensemble``: no weights of its own; the logit is the weighted sum of the logits of its member
  ``hand-chirality`` cards (``members``: model and weight), each read off the same map.
* ``hand-atoms``: no weights; atoms are fitted to the map (:mod:`crysplugins.crystal.atom_fit`), the sequence's
  covalent graph is matched onto them and every matched Cα votes L or D by its chiral volume
  (:mod:`crysplugins.crystal.covalent_match`).  Where no Cα is read (no sequence given, glycines only, a match
  that places fewer than ``min_matched`` of the atoms, as on a noisy map, or more residues than ``max_residues``)
  the card's ``fallback`` hand model decides.

All are antisymmetric: the logit of the inverted map is minus the logit of the map, so the decision never
depends on which hand it is shown.
"""
from __future__ import annotations

from typing import Any

import gemmi
import numpy as np

from crysplugins.crystal.atom_fit import FittedAtoms, fit_atoms, map_terms, rephase_atoms
from crysplugins.crystal.chirality import (FEATURE_SETS, VOXEL_FEATURE_SET, hand_score, n_features, n_voxel_fields,
                                          pseudoscalar_features, voxel_fields)
from crysplugins.crystal.covalent_match import hand_vote, molecule_graph
from crysplugins.crystal.maps import invert_grid
from crysplugins.errors import CrysError
from crysplugins.runtime.models import find_card
from crysplugins.runtime.runner import OnnxRunner


#: the arrays of a ``gated`` head and their shapes for S scalars, P pseudoscalars, H hidden units
_GATED_SHAPES = {"scalar_mean": ("S",), "scalar_scale": ("S",), "scale": ("P",), "hidden_weights": ("S+P", "H"),
                 "hidden_bias": ("H",), "gate_weights": ("H", "P"), "gate_bias": ("P",)}


def _gated_head(card: Any) -> tuple[list[float], str, dict[str, np.ndarray]]:
    name = card.get("name", "(unnamed)")
    try:
        sigmas = [float(s) for s in card.get("sigmas")]
        params = {k: np.asarray(card.get(k), dtype=float) for k in _GATED_SHAPES}
        params["voxel_count"] = np.asarray(int(card.get("voxel_count")))
        n_s, n_p = n_voxel_fields(len(sigmas))
        dims = {"S": n_s, "P": n_p, "S+P": n_s + n_p,
                "H": params["hidden_bias"].shape[0] if params["hidden_bias"].ndim == 1 else -1}
        ok = all(params[k].shape == tuple(dims[d] for d in shape) for k, shape in _GATED_SHAPES.items()) and \
            all(bool(np.isfinite(v).all()) for v in params.values()) and bool((params["scale"] > 0).all()) and \
            bool((params["scalar_scale"] > 0).all()) and int(params["voxel_count"]) >= 1
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise CrysError(f"The hand model {name} has no valid blurs and gate weights for its voxel fields; "
                        "the card is damaged.")
    return sigmas, VOXEL_FEATURE_SET, params


def gated_score(scalars: np.ndarray, pseudo: np.ndarray, params: dict[str, np.ndarray]) -> np.ndarray:
    """Score of a ``gated`` head (:mod:`crysplugins.training.hand_gated`) for voxel fields (..., V, S) and
    (..., V, P): mean over voxels of Σ_k q_k · w_k(z), q = p / scale, z = [(s − μ)/σ, |q|],
    w(z) = tanh(z W₁ + b₁) W₂ + b₂.  The gate reads only even quantities (scalars and |q|) and multiplies an odd
    one, so the inverted map scores exactly minus; > 0 keeps the hand."""
    q = np.asarray(pseudo, dtype=np.float64) / params["scale"]
    z = np.concatenate([(np.asarray(scalars, dtype=np.float64) - params["scalar_mean"]) / params["scalar_scale"],
                        np.abs(q)], axis=-1)
    gate = np.tanh(z @ params["hidden_weights"] + params["hidden_bias"]) @ params["gate_weights"] + params["gate_bias"]
    return (q * gate).sum(-1).mean(-1)


def chirality_head(card: Any) -> tuple[list[float], str, dict[str, np.ndarray]]:
    """(blurs σ in Å, feature set, head parameters) of a ``hand-chirality`` card (a ModelCard or its dict),
    checked; CrysError for an unknown feature set or a damaged card.  A ``gated`` head (feature set
    ``voxel-gated-v1``) returns the arrays of :func:`gated_score` and ``voxel_count``.

    Heads: ``linear`` (``weights`` (F,)) or ``odd-mlp`` (``hidden`` (F, H), ``weights`` (H,): score =
    tanh((x / scale) · hidden) · weights, no biases, so odd in x); both divide by ``scale`` (F,) first."""
    name = card.get("name", "(unnamed)")
    feature_set = card.get("feature_set")
    if card.get("head") == "gated" and feature_set == VOXEL_FEATURE_SET:
        return _gated_head(card)
    if feature_set not in FEATURE_SETS:
        raise CrysError(f"The hand model {name} uses the feature set '{feature_set}'; this version "
                        f"computes {', '.join(repr(f) for f in FEATURE_SETS)}.")
    head = card.get("head", "linear")
    try:
        sigmas = [float(s) for s in card.get("sigmas")]
        params = {"weights": np.asarray(card.get("weights"), dtype=float),
                  "scale": np.asarray(card.get("scale"), dtype=float)}
        n_in = n_features(len(sigmas), feature_set)
        if head == "odd-mlp":
            params["hidden"] = np.asarray(card.get("hidden"), dtype=float)
            shape_ok = params["hidden"].shape == (n_in, len(params["weights"]))
        else:
            shape_ok = head == "linear" and len(params["weights"]) == n_in
        ok = shape_ok and params["weights"].ndim == 1 and len(params["scale"]) == n_in and \
            all(bool(np.isfinite(v).all()) for v in params.values()) and bool((params["scale"] > 0).all())
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise CrysError(f"The hand model {name} has no valid blurs, weights and scale for its features; "
                        "the card is damaged.")
    return sigmas, str(feature_set), params


def _one_value(values: Any) -> bool:
    """Whether ``values`` is one cell (gemmi.UnitCell or six numbers) or one sequence (a string or Sequence),
    not a list of them (a list of six cells or six sequences also has the shape (6,))."""
    if isinstance(values, str) or hasattr(values, "a") or hasattr(values, "residues"):
        return True
    try:
        return np.asarray(values, dtype=float).shape == (6,)
    except (TypeError, ValueError):
        return False


def _per_map(values: Any, n: int, what: str) -> list:
    """One value per map: ``values`` given once for all maps (a cell, a sequence) or as a list of n."""
    if _one_value(values):
        return [values] * n
    values = list(values)
    if len(values) != n:
        raise ValueError(f"one {what} per map is needed")
    return values


def _chirality_logits(maps: np.ndarray, card: Any, cells: Any) -> np.ndarray:
    sigmas, feature_set, params = chirality_head(card)
    if cells is None:
        raise CrysError(f"The hand model {card.name} needs the cell of each map.")
    cells = _per_map(cells, len(maps), "cell")
    if card.get("input", "prediction") == "refined":  # a refined map is on its amplitudes' scale: use rms units
        maps = [rms_normalised(m) for m in maps]
    if feature_set == VOXEL_FEATURE_SET:
        fields = [voxel_fields(m, c, sigmas, int(params["voxel_count"])) for m, c in zip(maps, cells)]
        return -np.array([gated_score(s, p, params) for s, p in fields])
    feats = np.stack([pseudoscalar_features(m, c, sigmas, feature_set) for m, c in zip(maps, cells)])
    if "hidden" in params:
        score = np.tanh((feats / params["scale"]) @ params["hidden"]) @ params["weights"]
    else:
        score = hand_score(feats, params["weights"], params["scale"])
    return -score  # score > 0 keeps the hand; logit > 0 means "inverted (D)"


def atoms_head(card: Any) -> dict[str, Any]:
    """The settings of a ``hand-atoms`` card, checked: fallback (a hand model's name), max_residues, b_iso (Å²,
    the blur of the fitted atoms), amplitude_cycles (the last refinement against the map's amplitudes),
    rephase_rounds, seed_share and per_round (partial-structure recycling and the atoms added per round, see
    :func:`crysplugins.crystal.atom_fit.build_atoms`), min_matched (the share of the sequence's atoms the match
    must place before its vote counts), vote_logit (the logit of one Cα vote) and element_weight; CrysError if
    damaged."""
    name = card.get("name", "(unnamed)")
    try:
        head = {"fallback": str(card.get("fallback")), "max_residues": int(card.get("max_residues")),
                "b_iso": float(card.get("b_iso")), "min_matched": float(card.get("min_matched")),
                "amplitude_cycles": int(card.get("amplitude_cycles", 0)),
                "rephase_rounds": int(card.get("rephase_rounds", 0)),
                "seed_share": float(card.get("seed_share", 2 / 3)), "per_round": int(card.get("per_round", 1)),
                "vote_logit": float(card.get("vote_logit")), "element_weight": float(card.get("element_weight", 1.0))}
        ok = bool(card.get("fallback")) and head["max_residues"] >= 2 and head["b_iso"] > 0 and \
            0 <= head["min_matched"] <= 1 and head["vote_logit"] > 0 and head["element_weight"] >= 0 and \
            head["amplitude_cycles"] >= 0 and head["rephase_rounds"] >= 0 and 0 < head["seed_share"] <= 1 and \
            head["per_round"] >= 1 and (head["rephase_rounds"] == 0 or head["amplitude_cycles"] > 0)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise CrysError(f"The hand model {name} has no valid fallback, max_residues, b_iso, min_matched, vote_logit "
                        "and recycling settings; the card is damaged.")
    return head


def ensemble_members(card: Any) -> list[tuple[str, float]]:
    """(model, weight) of each member of a ``hand-ensemble`` card, checked: every member a ``hand-chirality`` card
    (it reads the map alone) with the ensemble's ``input``, every weight > 0; CrysError if damaged."""
    name = card.get("name", "(unnamed)")
    try:
        members = [(str(m["model"]), float(m["weight"])) for m in card.get("members")]
        ok = len(members) >= 1 and all(w > 0 and np.isfinite(w) for _, w in members)
    except (TypeError, ValueError, KeyError):
        members, ok = [], False
    if not ok:
        raise CrysError(f"The hand model {name} lists no valid members (a model and a weight above 0 each); "
                        "the card is damaged.")
    for model, _ in members:
        member = find_card(model)
        if member.get("task") != "hand-chirality" or member.get("input", "prediction") != card.get("input"):
            raise CrysError(f"The hand model {name} lists {model}, which is not a 'hand-chirality' model reading "
                            f"'{card.get('input')}' maps; an ensemble sums the logits of such models only.")
    return members


def _vote_logit(rho: np.ndarray, cell: gemmi.UnitCell, sequence: str, head: dict[str, Any]) -> float:
    """−vote_logit × the Cα vote of atoms fitted to one map, or NaN where the match places too few atoms.

    Partial-structure recycling (:func:`crysplugins.crystal.atom_fit.rephase_atoms`) runs only when the plain
    fit's match fails the gate: the plain fit's gated votes were right on the train maps as given (208 of 208)
    and on 78 of 80 reads of their enantiomers (docs/lab-notes/hand-atoms.md), and the recycling rounds cost
    about twice the plain fit."""
    n_atoms, terms = len(molecule_graph(sequence).atoms), map_terms(rho, cell)
    fitted = fit_atoms(terms, cell, n_atoms, head["b_iso"], head["amplitude_cycles"], head["per_round"])
    logit = _gated_vote(fitted, cell, sequence, head)
    if np.isnan(logit) and head["rephase_rounds"] > 0:
        fitted = rephase_atoms(terms, cell, fitted, n_atoms, head["b_iso"], head["amplitude_cycles"],
                               head["rephase_rounds"], head["seed_share"], head["per_round"])
        logit = _gated_vote(fitted, cell, sequence, head)
    return logit


def _gated_vote(fitted: FittedAtoms, cell: gemmi.UnitCell, sequence: str, head: dict[str, Any]) -> float:
    """−vote_logit × the Cα vote of fitted atoms, or NaN where the match places fewer than min_matched of them."""
    read = hand_vote(fitted, cell, sequence, head["element_weight"])
    if read.vote != 0 and read.matched >= head["min_matched"] * read.n_atoms:
        return -head["vote_logit"] * read.vote
    return float("nan")


def _atom_logits(maps: np.ndarray, card: Any, cells: Any, sequences: Any) -> np.ndarray:
    """Logits of a ``hand-atoms`` card: half the difference of the logits of the map and of its inverse, each the
    Cα vote or, where there is none, the fallback's.  The fit starts from the map's peaks, whose order differs
    between a map and its inverse, so the two reads may differ; averaging them keeps the call antisymmetric."""
    head = atoms_head(card)
    if cells is None:
        raise CrysError(f"The hand model {card.get('name')} reads atoms fitted to each map: it needs each map's cell.")
    if find_card(head["fallback"]).get("task") == "hand-atoms":
        raise CrysError(f"The hand model {card.get('name')} names another atom-fit card, {head['fallback']}, as its "
                        "fallback; it needs a hand model that reads the map alone.")
    fallback = hand_logits(maps, head["fallback"], cells=cells)
    if sequences is None:  # nothing to match the atoms with: the fallback decides
        return fallback
    cells = [c if isinstance(c, gemmi.UnitCell) else gemmi.UnitCell(*[float(v) for v in c])
             for c in _per_map(cells, len(maps), "cell")]
    sequences = [str(getattr(s, "residues", s)) for s in _per_map(sequences, len(maps), "sequence")]
    logits = fallback.copy()
    for i, (rho, cell, seq) in enumerate(zip(maps, cells, sequences)):
        if len(seq) > head["max_residues"] or set(seq) <= {"G"}:
            continue
        rho = np.asarray(rho, dtype=np.float64)
        as_given = _vote_logit(rho, cell, seq, head)
        inverse = _vote_logit(invert_grid(rho), cell, seq, head)
        logits[i] = 0.5 * (np.nan_to_num(as_given, nan=fallback[i]) - np.nan_to_num(inverse, nan=-fallback[i]))
    return logits


def hand_confidence(logit: float) -> float:
    """P(the call is right) of a hand model's logit, 1 / (1 + exp(−|logit|)) (the logistic fit's own
    probability; the card's ``metrics`` say how well it held on held-out maps).  Meaningful only for a
    solved map: on a wrong map either hand is wrong."""
    return float(1.0 / (1.0 + np.exp(-abs(float(logit))))) if np.isfinite(logit) else float("nan")


def rms_normalised(a: np.ndarray) -> np.ndarray:
    """(a − mean) / rms: the scale a ``hand-chirality`` model with ``input: refined`` reads maps on."""
    a = np.asarray(a, dtype=np.float64)
    a = a - a.mean()
    return a / max(float(np.sqrt((a * a).mean())), 1e-12)


def hand_input(card: Any) -> str | None:
    """What the card's hand model reads: "prediction" (the predicted map itself), "refined" (the density-
    modified map of the prediction, :func:`crysplugins.runtime.recycle.refined_map_on_grid` of the refiner's
    result) or None when the card names no hand model."""
    get = card.get if hasattr(card, "get") else dict(card).get
    name = get("hand_model")
    if not name:
        return None
    hcard = find_card(str(name))
    return str(hcard.get("input", "prediction")) if hcard.get("task") in ("hand-chirality", "hand-atoms",
                                                                          "hand-ensemble") \
        else "prediction"


def hand_logits(maps: np.ndarray, hand_model: str, threads: int | None = None, cells: Any = None,
                sequences: Any = None) -> np.ndarray:
    """Logits of the hand model for maps (B, N1, N2, N3): > 0 means "this is the inverted (D) hand".

    ``cells``: one gemmi.UnitCell or (a, b, c, α, β, γ) per map, or one for all (needed by ``hand-chirality`` and
    ``hand-atoms``); ``sequences``: the fragment's one-letter sequence (or :class:`Sequence`) per map, or one for
    all (needed by ``hand-atoms``)."""
    card = find_card(hand_model)
    if card.get("task") == "hand-chirality":
        return _chirality_logits(np.asarray(maps), card, cells)
    if card.get("task") == "hand-atoms":
        return _atom_logits(np.asarray(maps), card, cells, sequences)
    if card.get("task") == "hand-ensemble":
        return sum(w * hand_logits(maps, model, threads=threads, cells=cells) for model, w in ensemble_members(card))
    runner, card = OnnxRunner.from_model(hand_model, threads=threads)
    if card.get("task") != "hand-classifier":
        raise CrysError(f"The model {hand_model} named as hand model is a '{card.get('task')}' model, "
                        "not a 'hand-chirality', 'hand-atoms', 'hand-ensemble' or 'hand-classifier'.")
    x = np.asarray(maps, dtype=np.float64)
    flat = x.reshape(len(x), -1)
    x = (x - flat.mean(axis=1).reshape(-1, 1, 1, 1)) / np.maximum(flat.std(axis=1, ddof=1), 1e-6).reshape(-1, 1, 1, 1)
    out = runner.run({runner.input_names[0]: x[:, None].astype(np.float32)})
    return np.asarray(out, dtype=np.float64).reshape(-1)


def hand_accuracy_note(hand_model: str) -> str:
    """' (the hand model was right in N % of its held-out test maps)' from its card (``metrics.pipeline_test``,
    measured on the maps the plugin's default pipeline gives it, else ``metrics.test``), or ''."""
    try:
        metrics = find_card(hand_model).get("metrics") or {}
        acc = float((metrics.get("pipeline_test") or metrics.get("test") or {})["hand_accuracy"])
    except (CrysError, KeyError, TypeError, ValueError):
        return ""
    return f" (the hand model was right in {100 * acc:.0f} % of its held-out test maps)"


def choose_hand(maps: np.ndarray, card: Any, threads: int | None = None, cells: Any = None,
                refined: np.ndarray | None = None, sequences: Any = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Put each predicted map (B, N1, N2, N3) on the L-amino-acid hand with the card's hand model.

    ``refined`` (B, N1, N2, N3): the density-modified maps of the predictions, which a hand model with
    ``input: refined`` reads (the decision is then applied to ``maps``); ``sequences``: as for
    :func:`hand_logits` (a ``hand-atoms`` model reads them).

    Returns (maps, inverted (B,) bool, logits (B,)).  A card without ``hand_model`` returns the maps as
    they are (nothing inverted, logits NaN).
    """
    get = card.get if hasattr(card, "get") else dict(card).get
    maps = np.asarray(maps)
    name = get("hand_model")
    if not name:
        return maps, np.zeros(len(maps), bool), np.full(len(maps), np.nan)
    read = maps
    if hand_input(card) == "refined":
        if refined is None:
            raise CrysError(f"The hand model {name} reads the density-modified map of a prediction; it is used "
                            "after recycling (cycles >= 1), where that map exists.")
        read = np.asarray(refined)
    logits = hand_logits(read, str(name), threads=threads, cells=cells, sequences=sequences)
    inverted = logits > 0
    out = maps.copy()
    if inverted.any():
        out[inverted] = invert_grid(maps[inverted])
    return out, inverted, logits
