"""RecCrysFormer: Patterson map (+ standard residue densities) -> electron density map.

Pan et al., "RecCrysFormer" (``shared/papers/000_48ed4bf687035fb9.txt``), section 3 (architecture,
fig. 2-3), section 5 (implementation details) and appendix G (hyperparameters).

Data flow for a batch of maps of shape (N1, N2, N3) (all multiples of the patch size d):

1. ``CircularConv3d`` (kernel 7, circular "same" padding) on the Patterson map(s): ``in_channels`` input
   channels (1: the Patterson map; 2: Patterson + template density, used by recycling, section 4) ->
   ``c`` channels.
2. Partition into d^3 patches, flatten, MLP -> d_t tokens (S = N1 N2 N3 / d^3 of them), plus a learned
   3-D position embedding indexed by the patch coordinates (i, j, k) (factorised: E1[i] + E2[j] + E3[k]),
   so a token means the same position in every map shape, never "the n-th token".
3. Partial structures (section 3, eq. 6): the 20 standard residue densities (a buffer
   ``residue_boxes`` of shape (20, M, M, M), normalised like the training data) go through their own
   circular CNN + patch MLP + position embedding once per forward pass; each example gathers the token
   group of each of its residues (plus a residue-order embedding).  These tokens are fixed across layers.
4. ``depth`` transformer layers in which only Patterson tokens make queries; keys and values come from
   Patterson tokens (W_k, W_v) and partial-structure tokens (separate W_k', W_v'): one-way attention.
   Attention is exact (``F.scaled_dot_product_attention``) or Nystrom (section 5; landmarks by segment
   means computed from symbolic lengths so that exported graphs stay right for every length).
5. Decoder: MLP -> rearrange tokens to (c_dec, N1, N2, N3) -> two BigGAN-style residual blocks (kernel
   5) -> kernel-3 convolution -> tanh (densities are normalised to [-1, 1], appendix B).

All convolutions are circular because every map covers exactly one periodic unit cell.
Inputs are normalised maps (dimensionless); the output is a normalised density in [-1, 1].
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from crysplugins.training.nets.conv import CircularConv3d, set_fft

#: defaults of every architecture key (a config file overrides them)
DEFAULTS: dict[str, Any] = {
    "in_channels": 1,          # 1 Patterson; 2 Patterson + template (recycling)
    "conv_channels": 10,       # c (appendix G)
    "conv_kernel": 7,
    "patch": 4,                # d1 = d2 = d3
    "d_t": 512,
    "heads": 8,                # H; d_h = d_t / H
    "depth": 10,               # L
    "d_ff": 2048,
    "dropout": 0.0,
    "attention": "nystrom",    # "exact" or "nystrom"
    "landmarks": 64,
    "pinv_iterations": 6,
    "partial": True,
    "partial_channels": 10,    # c'
    "partial_box": 24,         # M
    "partial_patch": None,     # patch size of the partial-structure embedding (None: same as "patch")
    "n_residue_types": 20,
    "max_residues": 15,
    "max_patches_per_axis": 32,
    "decoder_channels": 16,
    "decoder_kernel": 5,
    "use_fft": False,          # FFT convolutions (training speed on CPU); export always uses direct convs
}


def model_config(config: dict[str, Any] | None) -> dict[str, Any]:
    """DEFAULTS updated by ``config``; unknown keys are an error (a typo must not pass silently)."""
    cfg = dict(DEFAULTS)
    unknown = set(config or {}) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown RecCrysFormer config keys: {sorted(unknown)}")
    cfg.update(config or {})
    if cfg["d_t"] % cfg["heads"]:
        raise ValueError("d_t must be a multiple of heads")
    if cfg["attention"] not in ("exact", "nystrom"):
        raise ValueError("attention must be 'exact' or 'nystrom'")
    if cfg["partial_box"] % (cfg["partial_patch"] or cfg["patch"]):
        raise ValueError("partial_box must be a multiple of the partial patch size")
    return cfg


# ------------------------------------------------------------------------------------------ helpers

def _tracing() -> bool:
    return torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling() or torch.jit.is_tracing()


def patchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """(B, C, N1, N2, N3) -> (B, S, C p^3) with tokens ordered by patch coordinates (i, j, k)."""
    b, c, n1, n2, n3 = x.shape
    x = x.reshape(b, c, n1 // p, p, n2 // p, p, n3 // p, p)
    x = x.permute(0, 2, 4, 6, 1, 3, 5, 7)
    return x.reshape(b, (n1 // p) * (n2 // p) * (n3 // p), c * p * p * p)


def unpatchify(t: torch.Tensor, c: int, p: int, shape: tuple) -> torch.Tensor:
    """(B, S, C p^3) -> (B, C, N1, N2, N3); the inverse of :func:`patchify`."""
    n1, n2, n3 = shape
    b = t.shape[0]
    x = t.reshape(b, n1 // p, n2 // p, n3 // p, c, p, p, p)
    x = x.permute(0, 4, 1, 5, 2, 6, 3, 7)
    return x.reshape(b, c, n1, n2, n3)


class PositionEmbedding3D(nn.Module):
    """Learned position embedding indexed by 3-D patch coordinates: E1[i] + E2[j] + E3[k].

    The same (i, j, k) gets the same vector whatever the map shape (a 2x3x4-patch map and a 4x4x4-patch
    map agree where they overlap).
    """

    def __init__(self, max_n: int, dim: int) -> None:
        super().__init__()
        self.max_n = max_n
        self.e1 = nn.Parameter(torch.empty(max_n, dim))
        self.e2 = nn.Parameter(torch.empty(max_n, dim))
        self.e3 = nn.Parameter(torch.empty(max_n, dim))

    def forward(self, n1: int, n2: int, n3: int) -> torch.Tensor:  # -> (n1 n2 n3, dim)
        if not _tracing() and max(int(n1), int(n2), int(n3)) > self.max_n:
            raise ValueError(f"map has {n1}x{n2}x{n3} patches; the model takes at most {self.max_n} per axis")
        pe = self.e1[:n1, None, None, :] + self.e2[None, :n2, None, :] + self.e3[None, None, :n3, :]
        return pe.reshape(-1, pe.shape[-1])


class PatchEmbed(nn.Module):
    """Circular conv (kernel k) -> d^3 patches -> MLP -> d_t tokens (+ 3-D position embedding)."""

    def __init__(self, in_ch: int, ch: int, kernel: int, patch: int, d_t: int, max_n: int) -> None:
        super().__init__()
        self.patch = patch
        self.conv = CircularConv3d(in_ch, ch, kernel)
        self.mlp = nn.Sequential(nn.Linear(ch * patch ** 3, d_t), nn.GELU(), nn.Linear(d_t, d_t))
        self.pos = PositionEmbedding3D(max_n, d_t)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, Cin, N1, N2, N3) -> (B, S, d_t)
        p = self.patch
        n1, n2, n3 = x.shape[-3] // p, x.shape[-2] // p, x.shape[-1] // p
        t = self.mlp(patchify(F.gelu(self.conv(x)), p))
        return t + self.pos(n1, n2, n3)


# --------------------------------------------------------------------------------------- attention

def segment_means_matrix(length: torch.Tensor | int, m: int, like: torch.Tensor) -> torch.Tensor:
    """(m, length) matrix averaging ``length`` consecutive tokens into m segment means (Nystrom landmarks).

    Built from ``arange(length)`` so it stays right when ``length`` is symbolic in an exported graph.
    Segment s holds tokens t with floor(t m / length) = s; an empty segment (length < m) gives zeros.
    """
    t = torch.arange(length, device=like.device)
    seg = torch.div(t * m, length, rounding_mode="floor")
    onehot = (seg[None, :] == torch.arange(m, device=like.device)[:, None]).to(like.dtype)
    return onehot / onehot.sum(dim=1, keepdim=True).clamp(min=1.0)


def _iterative_pinv(a: torch.Tensor, iterations: int) -> torch.Tensor:
    """Moore-Penrose pseudo-inverse by the Newton-Schulz-type iteration of Nystromformer (Xiong et al.)."""
    eye = torch.eye(a.shape[-1], device=a.device, dtype=a.dtype)
    norm = a.abs().sum(dim=-1).amax(dim=-1, keepdim=True) * a.abs().sum(dim=-2).amax(dim=-1, keepdim=True)
    z = a.transpose(-1, -2) / norm.unsqueeze(-1)
    for _ in range(iterations):
        az = a @ z
        z = 0.25 * z @ (13 * eye - az @ (15 * eye - az @ (7 * eye - az)))
    return z


def nystrom_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, landmarks: int,
                      iterations: int = 6) -> torch.Tensor:
    """Nystrom approximation of softmax(q k^T / sqrt(d_h)) v (section 5; q: (B,H,S,d), k, v: (B,H,T,d))."""
    scale = q.shape[-1] ** -0.5
    q = q * scale
    pq = segment_means_matrix(q.shape[-2], landmarks, q)
    pk = segment_means_matrix(k.shape[-2], landmarks, k)
    q_l = pq @ q
    k_l = pk @ k
    k1 = torch.softmax(q @ k_l.transpose(-1, -2), dim=-1)       # (B,H,S,m)
    k2 = torch.softmax(q_l @ k_l.transpose(-1, -2), dim=-1)     # (B,H,m,m)
    k3 = torch.softmax(q_l @ k.transpose(-1, -2), dim=-1)       # (B,H,m,T)
    return k1 @ (_iterative_pinv(k2, iterations) @ (k3 @ v))


class OneWayAttention(nn.Module):
    """Multi-head attention where queries come from Patterson tokens only (fig. 3).

    Keys/values: Concat(W_k X, W_k' U), Concat(W_v X, W_v' U); partial tokens U never make queries and
    are never updated.
    """

    def __init__(self, d_t: int, heads: int, attention: str, landmarks: int, iterations: int,
                 partial: bool, dropout: float) -> None:
        super().__init__()
        self.heads, self.attention, self.landmarks, self.iterations = heads, attention, landmarks, iterations
        self.q = nn.Linear(d_t, d_t)
        self.kv = nn.Linear(d_t, 2 * d_t)
        self.kv_partial = nn.Linear(d_t, 2 * d_t) if partial else None
        self.out = nn.Linear(d_t, d_t)
        self.dropout = dropout

    def _split(self, t: torch.Tensor) -> torch.Tensor:  # (B, S, d_t) -> (B, H, S, d_h)
        b = t.shape[0]
        return t.reshape(b, -1, self.heads, t.shape[-1] // self.heads).transpose(1, 2)

    def forward(self, x: torch.Tensor, u: torch.Tensor | None,
                u_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``u_mask``: (B, T') bool, False for partial tokens of padding residues (never attended)."""
        q = self._split(self.q(x))
        k, v = self.kv(x).chunk(2, dim=-1)
        mask = None
        if u is not None and self.kv_partial is not None:
            ku, vu = self.kv_partial(u).chunk(2, dim=-1)
            k, v = torch.cat([k, ku], dim=1), torch.cat([v, vu], dim=1)
            if u_mask is not None:
                keep_x = torch.ones(x.shape[0], x.shape[1], dtype=torch.bool, device=x.device)
                mask = torch.cat([keep_x, u_mask], dim=1)[:, None, None, :]
        k, v = self._split(k), self._split(v)
        if self.attention == "exact":
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                               dropout_p=self.dropout if self.training else 0.0)
        else:
            o = nystrom_attention(q, k, v, self.landmarks, self.iterations)
        b = x.shape[0]
        o = o.transpose(1, 2).reshape(b, -1, x.shape[-1])
        return self.out(o)


class TransformerLayer(nn.Module):
    """Pre-norm layer: x + Attn(LN(x), LN'(U)); x + FF(LN(x)) (skip connections and layer norms as in
    the paper's footnote 2)."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__()
        d = cfg["d_t"]
        self.norm1 = nn.LayerNorm(d)
        self.norm_u = nn.LayerNorm(d) if cfg["partial"] else None
        self.attn = OneWayAttention(d, cfg["heads"], cfg["attention"], cfg["landmarks"],
                                    cfg["pinv_iterations"], cfg["partial"], cfg["dropout"])
        self.norm2 = nn.LayerNorm(d)
        self.ff = nn.Sequential(nn.Linear(d, cfg["d_ff"]), nn.ReLU(), nn.Linear(cfg["d_ff"], d))
        self.drop = nn.Dropout(cfg["dropout"])

    def forward(self, x: torch.Tensor, u: torch.Tensor | None,
                u_mask: torch.Tensor | None = None) -> torch.Tensor:
        un = self.norm_u(u) if (u is not None and self.norm_u is not None) else None
        x = x + self.drop(self.attn(self.norm1(x), un, u_mask))
        return x + self.drop(self.ff(self.norm2(x)))


class ResBlock(nn.Module):
    """BigGAN-style residual block without resampling: x + conv(relu(GN(conv(relu(GN(x))))))."""

    def __init__(self, ch: int, kernel: int) -> None:
        super().__init__()
        groups = math.gcd(ch, 4)
        self.norm1 = nn.GroupNorm(groups, ch)
        self.conv1 = CircularConv3d(ch, ch, kernel)
        self.norm2 = nn.GroupNorm(groups, ch)
        self.conv2 = CircularConv3d(ch, ch, kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.relu(self.norm1(x)))
        h = self.conv2(F.relu(self.norm2(h)))
        return x + h


# ------------------------------------------------------------------------------------------- model

class RecCrysFormer(nn.Module):
    """The model; ``forward(patterson, sequence=None) -> density``.

    ``patterson``: (B, in_channels, N1, N2, N3) normalised maps, N_i multiples of ``patch``.
    ``sequence``: (B, R) int64 indices into the residue types (0..19), when ``partial`` is on.
    Returns (B, 1, N1, N2, N3) normalised density in [-1, 1].
    """

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        super().__init__()
        cfg = self.config = model_config(config)
        d, p = cfg["d_t"], cfg["patch"]
        self.embed = PatchEmbed(cfg["in_channels"], cfg["conv_channels"], cfg["conv_kernel"], p, d,
                                cfg["max_patches_per_axis"])
        if cfg["partial"]:
            box = cfg["partial_box"]
            self.register_buffer("residue_boxes", torch.zeros(cfg["n_residue_types"], box, box, box))
            pp = cfg["partial_patch"] or p
            self.embed_partial = PatchEmbed(1, cfg["partial_channels"], cfg["conv_kernel"], pp, d, box // pp)
            self.residue_position = nn.Parameter(torch.empty(cfg["max_residues"], d))
        self.layers = nn.ModuleList([TransformerLayer(cfg) for _ in range(cfg["depth"])])
        self.norm = nn.LayerNorm(d)
        dec = cfg["decoder_channels"]
        self.decode_mlp = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, dec * p ** 3))
        self.blocks = nn.Sequential(ResBlock(dec, cfg["decoder_kernel"]), ResBlock(dec, cfg["decoder_kernel"]))
        self.final_norm = nn.GroupNorm(math.gcd(dec, 4), dec)
        self.final = CircularConv3d(dec, 1, 3)
        self.reset_parameters()
        set_fft(self, cfg["use_fft"])

    def reset_parameters(self) -> None:
        """Initialise every parameter explicitly (truncated normal 0.02 for linear maps and embeddings,
        Kaiming for convolutions, ones/zeros for norms and biases)."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.LayerNorm, nn.GroupNorm)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, PositionEmbedding3D):
                for e in (m.e1, m.e2, m.e3):
                    nn.init.trunc_normal_(e, std=0.02)
        if self.config["partial"]:
            nn.init.trunc_normal_(self.residue_position, std=0.02)
        # the last conv of each residual block starts near zero so blocks start as identities
        for blk in self.blocks:
            nn.init.normal_(blk.conv2.weight, std=1e-3)
        nn.init.normal_(self.final.weight, std=1e-2)

    def set_residue_boxes(self, boxes: torch.Tensor) -> None:
        """Store the normalised standard-residue densities (20, M, M, M) the partial tokens come from."""
        if not self.config["partial"]:
            return
        boxes = torch.as_tensor(boxes, dtype=torch.float32)
        if tuple(boxes.shape) != tuple(self.residue_boxes.shape):
            raise ValueError(f"residue boxes have shape {tuple(boxes.shape)}, the model expects "
                             f"{tuple(self.residue_boxes.shape)}")
        self.residue_boxes.copy_(boxes)

    def partial_tokens(self, sequence: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, R) residue indices -> ((B, R S', d_t) tokens fixed across layers, (B, R S') key mask).

        A negative index is padding: fragments of different lengths share a batch by padding their
        sequences with -1 on the right; the tokens of a padding residue are computed (from residue 0)
        but masked out of every attention, so the output does not depend on them.
        """
        table = self.embed_partial(self.residue_boxes.unsqueeze(1))          # (20, S', d_t)
        keep = sequence >= 0
        tokens = table[sequence.clamp(min=0)]                                 # (B, R, S', d_t)
        r = sequence.shape[1]
        tokens = tokens + self.residue_position[:r][None, :, None, :]
        mask = keep[:, :, None].expand(-1, -1, tokens.shape[2])
        return tokens.reshape(sequence.shape[0], -1, tokens.shape[-1]), mask.reshape(sequence.shape[0], -1)

    def forward(self, patterson: torch.Tensor, sequence: torch.Tensor | None = None) -> torch.Tensor:
        cfg = self.config
        p = cfg["patch"]
        shape = patterson.shape[-3:]
        if not _tracing():
            if patterson.dim() != 5 or patterson.shape[1] != cfg["in_channels"]:
                raise ValueError(f"expected (B, {cfg['in_channels']}, N1, N2, N3), got {tuple(patterson.shape)}")
            if any(int(n) % p for n in shape):
                raise ValueError(f"map shape {tuple(shape)} is not a multiple of the patch size {p}")
            if cfg["partial"] and sequence is None:
                raise ValueError("this model needs the residue sequence")
        x = self.embed(patterson)
        u, u_mask = self.partial_tokens(sequence) if cfg["partial"] else (None, None)
        if u_mask is not None and cfg["attention"] != "exact" and not _tracing() and not bool(u_mask.all()):
            raise ValueError("padded sequences (index -1) need exact attention")
        for layer in self.layers:
            x = layer(x, u, u_mask)
        t = self.decode_mlp(self.norm(x))
        y = unpatchify(t, cfg["decoder_channels"], p, shape)
        y = self.blocks(y)
        y = self.final(F.relu(self.final_norm(y)))
        return torch.tanh(y)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
