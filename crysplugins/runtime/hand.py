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


def invert_through_centre(a: np.ndarray) -> np.ndarray:
    """Inversion through the cell centre on the last three axes: voxel i -> (N - i) mod N.

    Fractional x -> 1 - x; a centre of mass at (1/2, 1/2, 1/2) stays there and the structure-factor
    amplitudes are unchanged (phases change sign).
    """
    axes = (-3, -2, -1)
    return np.roll(np.flip(a, axis=axes), 1, axis=axes)


def hand_logits(maps: np.ndarray, hand_model: str, threads: int | None = None) -> np.ndarray:
    """Logits of the hand classifier for maps (B, N1, N2, N3): > 0 means "this is the inverted (D) hand"."""
    from crysplugins.runtime.models import load_model

    session, _card = load_model(hand_model, threads=threads)
    x = np.asarray(maps, dtype=np.float64)
    flat = x.reshape(len(x), -1)
    x = (x - flat.mean(axis=1).reshape(-1, 1, 1, 1)) / np.maximum(flat.std(axis=1, ddof=1), 1e-6).reshape(-1, 1, 1, 1)
    name = session.get_inputs()[0].name
    return np.asarray(session.run(None, {name: x[:, None].astype(np.float32)})[0], dtype=np.float64).reshape(-1)


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
        out[inverted] = invert_through_centre(maps[inverted])
    return out, inverted, logits
