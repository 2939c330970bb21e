"""The 3D residual U-net of Skubák (2024), section 2.2, in PyTorch.

* Four encoder blocks, each two (3x3x3 conv, 'same' padding -> batch norm -> ReLU); a 2x2x2 max-pool
  after each of the first three.  ``base`` filters in the first block (24 in the paper), doubled per block.
* Three decoder blocks: 3x3x3 transposed conv with stride 2 (halving the filters), concatenation with the
  encoder output of the same size (the skip connections the paper calls residual), then
  (3x3x3 conv -> batch norm -> ReLU) halving the filters again, back to ``base``.
* A final 1x1x1 conv to ``n_classes`` (2: protein = 0, solvent = 1) logits.
* He-normal ('he_normal') initialisation of every conv weight.

With base = 24 the net has about 3.3 million parameters (the paper: "approximately three million").
Input: (batch, 1, D, H, W) with D, H, W multiples of 8; output logits (batch, n_classes, D, H, W).
"""
from __future__ import annotations

import torch
from torch import nn


def conv_bn_relu(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv3d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm3d(c_out),
                         nn.ReLU(inplace=True))


class UNet3D(nn.Module):
    """Section 2.2 U-net; ``base`` sets the width (24 = paper, 8 = slim CPU variant)."""

    def __init__(self, base: int = 24, in_channels: int = 1, n_classes: int = 2, depth: int = 4) -> None:
        super().__init__()
        self.config = {"base": base, "in_channels": in_channels, "n_classes": n_classes, "depth": depth}
        widths = [base * 2 ** i for i in range(depth)]
        self.encoders = nn.ModuleList()
        c = in_channels
        for w in widths:
            self.encoders.append(nn.Sequential(conv_bn_relu(c, w), conv_bn_relu(w, w)))
            c = w
        self.pool = nn.MaxPool3d(2)
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for w in reversed(widths[:-1]):
            self.ups.append(nn.ConvTranspose3d(c, w, 3, stride=2, padding=1, output_padding=1))
            self.decoders.append(conv_bn_relu(2 * w, w))
            c = w
        self.head = nn.Conv3d(c, n_classes, 1)
        for m in self.modules():
            if isinstance(m, (nn.Conv3d, nn.ConvTranspose3d)):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, enc in enumerate(self.encoders):
            x = enc(x)
            if i < len(self.encoders) - 1:
                skips.append(x)
                x = self.pool(x)
        for up, dec, skip in zip(self.ups, self.decoders, reversed(skips)):
            x = dec(torch.cat([up(x), skip], dim=1))
        return self.head(x)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


class UNet3DEnsemble(nn.Module):
    """Several independently trained section 2.2 U-nets on the same window, their class probabilities averaged.

    The output is log of the mean softmax probability per class, so it is still a logit vector
    (softmax(log p̄) = p̄) and the solvent-mask plugin reads it like a single net's output.  Averaging
    probabilities of separately trained nets is the usual deep ensemble (Lakshminarayanan et al., 2017).
    """

    def __init__(self, members: list[UNet3D]) -> None:
        super().__init__()
        if len(members) < 2:
            raise ValueError("An ensemble needs at least two U-nets.")
        self.members = nn.ModuleList(members)
        self.config = {"members": [dict(m.config) for m in members]}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probs = torch.stack([torch.softmax(m(x), dim=1) for m in self.members]).mean(0)
        return torch.log(probs.clamp_min(1e-7))
