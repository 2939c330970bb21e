"""Choose the hand of a predicted fragment density (numpy + onnxruntime; no torch).

A Patterson map cannot tell a structure from its inverse through the cell centre (RecCrysFormer paper
000, section 3: the Patterson map is centrosymmetric; appendix B puts the centre of mass at the cell
centre).  A hand-invariant RecCrysFormer predicts one of the two hands; the hand classifier of its card
(``card["hand_model"]``, :mod:`crysplugins.training.nets.hand_classifier`) says whether the map holds
L-amino acids (keep it) or D-amino acids (invert it).  The classifier is antisymmetric: its logit for the
inverted map is minus its logit for the map, so the decision never depends on which hand it is shown.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from crysplugins.crystal.maps import invert_grid


def hand_logits(maps: np.ndarray, hand_model: str, threads: int | None = None) -> np.ndarray:
    """Logits of the hand classifier for maps (B, N1, N2, N3): > 0 means "this is the inverted (D) hand"."""
    from crysplugins.errors import CrysError
    from crysplugins.runtime.models import load_model

    session, card = load_model(hand_model, threads=threads)
    if card.get("task") != "hand-classifier":
        raise CrysError(f"The model {hand_model} named as hand classifier is a '{card.get('task')}' model, "
                        "not a 'hand-classifier'.")
    x = np.asarray(maps, dtype=np.float64)
    flat = x.reshape(len(x), -1)
    x = (x - flat.mean(axis=1).reshape(-1, 1, 1, 1)) / np.maximum(flat.std(axis=1, ddof=1), 1e-6).reshape(-1, 1, 1, 1)
    name = session.get_inputs()[0].name
    try:
        out = session.run(None, {name: x[:, None].astype(np.float32)})[0]
    except Exception as exc:
        raise CrysError(f"The hand classifier {hand_model} could not run on a {x.shape[1:]} grid "
                        f"({str(exc).splitlines()[0][:160]}).") from None
    return np.asarray(out, dtype=np.float64).reshape(-1)


def choose_hand(maps: np.ndarray, card: Any, threads: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Put each predicted map (B, N1, N2, N3) on the L-amino-acid hand with the card's hand classifier.

    Returns (maps, inverted (B,) bool, logits (B,)).  A card without ``hand_model`` returns the maps as
    they are (nothing inverted, logits NaN).
    """
    get = card.get if hasattr(card, "get") else dict(card).get
    maps = np.asarray(maps)
    name = get("hand_model")
    if not name:
        return maps, np.zeros(len(maps), bool), np.full(len(maps), np.nan)
    logits = hand_logits(maps, str(name), threads=threads)
    inverted = logits > 0
    out = maps.copy()
    if inverted.any():
        out[inverted] = invert_grid(maps[inverted])
    return out, inverted, logits
