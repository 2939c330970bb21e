"""Periodic (circular) 3-D convolutions for maps sampled on a whole unit cell.

A map on a unit-cell grid is periodic, so every convolution here pads circularly ("same" size, odd
kernels).  :class:`CircularConv3d` holds an ordinary ``nn.Conv3d`` weight and computes it either

* directly (circular ``F.pad`` + ``F.conv3d``; what is exported to ONNX), or
* as a product in Fourier space (``torch.fft.rfftn``), which on CPU is about 10x faster for 5^3 and 7^3
  kernels (CALIBRATION.md "Learning dipeptides on CPU").

Both give the same result (to float rounding): ``tests/test_reccrysformer.py`` checks the parity.
The FFT path is a circular cross-correlation: out[x] = sum_d w[d] in[(x + d - p) mod N], which in Fourier
space is F(out) = sum_in F(in) * conj(F(w')), with w' the kernel embedded in the grid at offsets d - p.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CircularConv3d(nn.Conv3d):
    """``nn.Conv3d`` with circular "same" padding; ``use_fft`` selects the Fourier-space computation.

    ``use_fft`` can be switched at any time (the weights are the same); export with ``use_fft=False``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True,
                 use_fft: bool = False) -> None:
        if kernel_size % 2 != 1:
            raise ValueError("circular 'same' convolutions need an odd kernel size")
        super().__init__(in_channels, out_channels, kernel_size, padding=0, bias=bias)
        self.pad = kernel_size // 2
        self.use_fft = use_fft

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, Cin, N1, N2, N3)
        if self.use_fft and self.pad > 0 and not torch.onnx.is_in_onnx_export():
            return self._fft_forward(x)
        if self.pad > 0:
            p = self.pad
            x = F.pad(x, (p, p, p, p, p, p), mode="circular")
        return F.conv3d(x, self.weight, self.bias)

    def _fft_forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape[-3:]
        if min(shape) < self.kernel_size[0]:
            p = self.pad
            return F.conv3d(F.pad(x, (p, p, p, p, p, p), mode="circular"), self.weight, self.bias)
        dtype = x.dtype
        x = x.float()
        w = self.weight.float()
        k = self.kernel_size[0]
        # embed the kernel at offsets d - p (mod N): pad to the grid, then roll the centre to the origin
        wpad = F.pad(w, (0, shape[2] - k, 0, shape[1] - k, 0, shape[0] - k))
        wpad = torch.roll(wpad, shifts=(-self.pad, -self.pad, -self.pad), dims=(-3, -2, -1))
        fx = torch.fft.rfftn(x, dim=(-3, -2, -1))                      # (B, Cin, ...)
        fw = torch.fft.rfftn(wpad, dim=(-3, -2, -1)).conj()            # (Cout, Cin, ...)
        # channel mixing as a sum of broadcast products (a complex einsum/bmm over small matrices is slow)
        fy = fx[:, 0:1] * fw[None, :, 0]
        for i in range(1, fx.shape[1]):
            fy = fy + fx[:, i:i + 1] * fw[None, :, i]
        y = torch.fft.irfftn(fy, s=shape, dim=(-3, -2, -1))
        if self.bias is not None:
            y = y + self.bias.float().view(1, -1, 1, 1, 1)
        return y.to(dtype)


def set_fft(module: nn.Module, enabled: bool) -> None:
    """Switch every :class:`CircularConv3d` in ``module`` to (or from) the FFT computation."""
    for m in module.modules():
        if isinstance(m, CircularConv3d):
            m.use_fft = enabled
