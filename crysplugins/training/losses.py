"""Losses for density prediction (RecCrysFormer paper, section 3, eq. 7 and eq. 8).

    L = c_MSE * MSE(e', e) - c_P * mean_i PC(e_i, e'_i) - c_P * mean_i PC(|FFT(e_i)|, |FFT(e'_i)|)

PC is the Pearson correlation over every voxel of one map (eq. 7).  The paper's weights are c_MSE = 0.9999
and c_P = 5e-5; for small CPU runs CALIBRATION.md found c_P ~ 0.01 learns much faster.  Maps are the
normalised densities in [-1, 1] (dimensionless).  The loss is always computed in float32 (FFTs do not run
in bf16/fp16 autocast).

Hand-invariant variant (``hand_invariant=True``): a Patterson map is centrosymmetric, so it cannot tell a
structure from its inverse through the cell centre (the dataset puts the centre of mass there, appendix B).
Eq. 8 then rewards the *average* of both hands (the Pearson of that average with the truth is about 0.83
for dipeptides, BENCHMARKS.md).  With this option each example's MSE and Pearson terms are taken against
whichever hand of the target fits better (the |FFT| term is the same for both hands), so the network may
commit to one clean hand; :mod:`crysplugins.runtime.hand` then picks the hand with L-amino acids.
"""
from __future__ import annotations

import torch


def pearson_per_example(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Pearson correlation (eq. 7) of each example over all of its voxels: (B, ...) x (B, ...) -> (B,)."""
    a = a.reshape(a.shape[0], -1).float()
    b = b.reshape(b.shape[0], -1).float()
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    num = (a * b).sum(dim=1)
    den = torch.sqrt((a * a).sum(dim=1) * (b * b).sum(dim=1) + eps)
    return num / den


def invert_through_centre(x: torch.Tensor) -> torch.Tensor:
    """The map inverted through the cell centre: voxel i -> (N - i) mod N on each of the last 3 axes.

    Fractional x -> 1 - x, which maps a centre of mass at (1/2, 1/2, 1/2) onto itself; |FFT| is unchanged.
    """
    dims = (-3, -2, -1)
    return torch.roll(torch.flip(x, dims=dims), shifts=(1, 1, 1), dims=dims)


def fft_amplitudes(x: torch.Tensor) -> torch.Tensor:
    """|FFT| of each map over its three spatial axes: (B, [C,] N1, N2, N3) -> same shape, float32."""
    return torch.fft.fftn(x.float(), dim=(-3, -2, -1)).abs()


def density_loss(pred: torch.Tensor, target: torch.Tensor, c_mse: float = 0.9999, c_p: float = 5e-5,
                 c_fft: float | None = None, hand_invariant: bool = False) -> tuple[torch.Tensor, dict[str, float]]:
    """Eq. 8.  ``c_fft`` weights the |FFT| Pearson term (defaults to ``c_p``, as in the paper).

    ``hand_invariant``: per example, the MSE and Pearson terms use the hand of the target (as stored, or
    inverted through the cell centre) that gives the lower loss; "hand_inverted" reports how often the
    inverted one was taken.
    Returns the scalar loss and {"mse", "pearson", "fft_pearson", "loss"} (batch means, floats).
    """
    c_fft = c_p if c_fft is None else c_fft
    pred = pred.float()
    target = target.float()
    extra: dict[str, float] = {}
    if hand_invariant:
        n = pred.shape[0]
        inverted = invert_through_centre(target)
        mse_each = torch.stack([((pred - t) ** 2).reshape(n, -1).mean(dim=1) for t in (target, inverted)])
        pc_each = torch.stack([pearson_per_example(pred, t) for t in (target, inverted)])
        choice = torch.argmin(c_mse * mse_each - c_p * pc_each, dim=0).detach()
        idx = torch.arange(n, device=pred.device)
        mse = mse_each[choice, idx].mean()
        pc = pc_each[choice, idx].mean()
        extra["hand_inverted"] = float(choice.float().mean())
    else:
        mse = torch.mean((pred - target) ** 2)
        pc = pearson_per_example(pred, target).mean()
    if c_fft:
        pc_fft = pearson_per_example(fft_amplitudes(pred), fft_amplitudes(target)).mean()
    else:
        pc_fft = torch.zeros((), device=pred.device)
    loss = c_mse * mse - c_p * pc - c_fft * pc_fft
    return loss, {"loss": float(loss.detach()), "mse": float(mse.detach()), "pearson": float(pc.detach()),
                  "fft_pearson": float(pc_fft.detach()), **extra}
