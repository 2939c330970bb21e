"""A small 3-D CNN that tells which hand of a fragment's density map holds L-amino acids.

Why: a Patterson map is centrosymmetric, so the structure and its inverse through the cell centre have
the same Patterson (RecCrysFormer paper 000, section 3; the dataset puts the centre of mass at the cell
centre, appendix B).  A hand-invariant RecCrysFormer (``loss.hand_invariant``) predicts one clean hand,
either one; this network decides, from the map alone, whether it must be inverted.  The cue is chirality:
protein residues are L-amino acids (the Cα tetrahedron N, C, Cβ), which the inverted map turns into D.

The network is antisymmetric by construction: ``logit(x) = g(x) - g(inv(x))`` with ``inv`` the inversion
through the cell centre (voxel i -> (N - i) mod N), so ``logit(inv(x)) = -logit(x)`` exactly and the two
hands can never both be called right.  ``logit > 0`` means "x is the inverted (D) hand".

Input: (B, 1, N1, N2, N3) density on the dataset's grid (any size divisible by 4), normalised per map to
zero mean and unit standard deviation (dimensionless); convolutions use circular padding (the map is
periodic).  Output: (B,) logits.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from crysplugins.training.losses import invert_through_centre

DEFAULTS: dict[str, Any] = {"channels": [8, 16, 32, 32, 64], "strides": [1, 2, 1, 2, 1], "kernel": 3}


class HandClassifier(nn.Module):
    """``logit(x) = g(x) - g(inv(x))``; positive when ``x`` is the D (inverted) hand."""

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.config = {**DEFAULTS, **(config or {})}
        layers: list[nn.Module] = []
        c_in = 1
        k = int(self.config["kernel"])
        for c_out, stride in zip(self.config["channels"], self.config["strides"]):
            layers += [nn.Conv3d(c_in, c_out, k, stride=stride, padding=k // 2, padding_mode="circular"),
                       nn.GroupNorm(1, c_out), nn.GELU()]
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c_in, 1)
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.head.weight, std=0.01)
        nn.init.zeros_(self.head.bias)

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """g(x): (B, 1, N1, N2, N3) -> (B,)."""
        return self.head(self.features(x).mean(dim=(-3, -2, -1))).squeeze(-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        both = self.score(torch.cat([x, invert_through_centre(x)], dim=0))
        n = x.shape[0]
        return both[:n] - both[n:]
