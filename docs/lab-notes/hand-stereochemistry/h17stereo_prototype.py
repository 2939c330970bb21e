"""A local stereochemical hand test for short peptide fragments (numpy only).

The amplitudes and the Patterson map of a fragment are those of its inverse; only the L-amino acids in a
solved map tell the hand.  Global pseudoscalar sums (:mod:`crysplugins.crystal.chirality`) carry little of
that signal for 2–5 residues, so this test looks at single residues: at each of the strongest density peaks
(candidate Cα sites) it fits an L-residue template — N, Cα, C, O, Cβ and the neighbouring peptide atoms
C(i−1), O(i−1), Cα(i−1), N(i+1), Cα(i+1), placed by a few common (φ, ψ) — over a fixed set of near-uniform
rotations, and the same for the template's mirror image (a D residue).  The fit is the electron-weighted
sum of the map (rms units, Fourier-interpolated to a fine grid) at the template's atoms; a site's vote is
best L fit − best D fit.  The D templates are the L templates inverted through Cα and the sites of an
inverted map are the inverted sites, so inverting the map flips the sign of every vote: the test is exactly
antisymmetric.
"""
from __future__ import annotations

from typing import Any, Sequence

import gemmi
import numpy as np

#: the common (φ, ψ) regions of L-residues (degrees): α, 3₁₀/bridge, β, PPII and extended β
TORSIONS = ((-63.0, -42.0), (-90.0, 0.0), (-120.0, 130.0), (-70.0, 145.0), (-140.0, 160.0), (-90.0, 120.0))
#: electrons per template atom (N 7, C 6, O 8), in template atom order
_ATOMS = ("N", "CA", "C", "O", "CB", "C-", "O-", "CA-", "N+", "CA+")
_ELECTRONS = np.array([7, 6, 6, 8, 6, 6, 8, 6, 7, 6], float)


def _place(a: np.ndarray, b: np.ndarray, c: np.ndarray, bond: float, angle: float, torsion: float) -> np.ndarray:
    """Atom D bonded to c (bond Å, angle b-c-D degrees, torsion a-b-c-D degrees): the NeRF construction."""
    bc = (c - b) / np.linalg.norm(c - b)
    n = np.cross(b - a, bc)
    n /= np.linalg.norm(n)
    m = np.cross(n, bc)
    th, tor = np.radians(180.0 - angle), np.radians(torsion)
    d = bond * np.array([np.cos(th), np.sin(th) * np.cos(tor), np.sin(th) * np.sin(tor)])
    return c + d[0] * bc + d[1] * m + d[2] * n


def residue_template(phi: float, psi: float) -> np.ndarray:
    """Cartesian coordinates (Å, Cα at the origin) of an L-alanine with its peptide neighbours, atoms in
    ``_ATOMS`` order, for backbone torsions φ, ψ (degrees); ideal geometry (Engh & Huber), ω = 180°."""
    n = np.array([-1.458, 0.0, 0.0])
    ca = np.zeros(3)
    c = 1.525 * np.array([np.cos(np.radians(180 - 111.0)), np.sin(np.radians(180 - 111.0)), 0.0])
    o = _place(n, ca, c, 1.231, 120.8, psi + 180.0)
    cb = _place(c, n, ca, 1.530, 110.5, -122.9)  # C-N-CA-CB = -123°: the L configuration
    c_prev = _place(c, ca, n, 1.329, 121.7, phi)
    o_prev = _place(ca, n, c_prev, 1.231, 123.0, 0.0)
    ca_prev = _place(ca, n, c_prev, 1.525, 116.2, 180.0)
    n_next = _place(n, ca, c, 1.329, 116.2, psi)
    ca_next = _place(ca, c, n_next, 1.458, 121.7, 180.0)
    return np.stack([n, ca, c, o, cb, c_prev, o_prev, ca_prev, n_next, ca_next])


def rotations(n: int, seed: int = 0) -> np.ndarray:
    """``n`` near-uniform rotation matrices (n, 3, 3) from fixed random unit quaternions."""
    q = np.random.default_rng(seed).normal(size=(n, 4))
    w, x, y, z = (q / np.linalg.norm(q, axis=1, keepdims=True)).T
    return np.stack([np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
                     np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
                     np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1)], 1)


def fine_map(density: np.ndarray, cell: Any, spacing: float) -> np.ndarray:
    """The map Fourier-interpolated (zero-padded) to a grid of at most ``spacing`` Å, in rms units."""
    rho = np.asarray(density, dtype=np.float64)
    uc = cell if isinstance(cell, gemmi.UnitCell) else gemmi.UnitCell(*[float(v) for v in cell])
    lengths = (uc.a, uc.b, uc.c)
    shape = tuple(max(n, 2 * int(np.ceil(L / spacing / 2))) for n, L in zip(rho.shape, lengths))
    spec = np.fft.fftshift(np.fft.fftn(rho))
    big = np.zeros(shape, complex)
    lo = [(s - n) // 2 for s, n in zip(shape, rho.shape)]
    big[lo[0]:lo[0] + rho.shape[0], lo[1]:lo[1] + rho.shape[1], lo[2]:lo[2] + rho.shape[2]] = spec
    out = np.fft.ifftn(np.fft.ifftshift(big)).real
    out -= out.mean()
    return out / max(float(np.sqrt((out * out).mean())), 1e-12)


def peaks(rho: np.ndarray, n: int) -> np.ndarray:
    """Grid indices (k, 3) of the ``n`` highest local maxima (26-neighbour, periodic) of ``rho``."""
    is_max = np.ones(rho.shape, bool)
    for s in np.ndindex(3, 3, 3):
        if s != (1, 1, 1):
            is_max &= rho >= np.roll(rho, (s[0] - 1, s[1] - 1, s[2] - 1), axis=(0, 1, 2))
    idx = np.argwhere(is_max)
    order = np.argsort(-rho[tuple(idx.T)], kind="stable")
    return idx[order[:n]]


def _fractionalisation(cell: Any) -> np.ndarray:
    uc = cell if isinstance(cell, gemmi.UnitCell) else gemmi.UnitCell(*[float(v) for v in cell])
    return np.array(uc.frac.mat.tolist(), float)


def site_fits(density: np.ndarray, cell: Any, n_sites: int = 20, n_rotations: int = 3000,
              torsions: Sequence[Sequence[float]] = TORSIONS, weights: Sequence[float] | None = None,
              spacing: float = 0.3, stride: int = 0, clip: float | None = None,
              refine: int = 0, refine_deg: float = 12.0, keep: int = 4,
              variants: bool = False) -> np.ndarray:
    """(best L fit, best D fit) (n_sites, 2) at the ``n_sites`` highest peaks of the map (any scale; read in
    rms units), each the maximum over rotations and (φ, ψ) of the weighted map sum at the template's atoms."""
    rho = fine_map(density, cell, spacing)
    shape = np.array(rho.shape)
    w = _ELECTRONS if weights is None else np.asarray(weights, float)
    tmpl = np.stack([residue_template(p, s) for p, s in torsions])           # (T, A, 3) Å
    if variants:  # the termini of a short peptide: no preceding residue; a carboxylate (OXT at N+)
        w = np.stack([w, w * (np.arange(10) < 5) + w * (np.arange(10) >= 8),
                      np.where(np.arange(10) == 8, 8.0, w) * (np.arange(10) != 9)])
        w = w / np.sqrt((w * w).sum(axis=1, keepdims=True))
        tmpl = np.concatenate([tmpl] * 3)
        w = np.repeat(w, len(torsions), axis=0)                              # (3T, A)
    cart = np.einsum("rij,taj->rtai", rotations(n_rotations), tmpl)          # (R, T, A, 3)
    grid = cart @ _fractionalisation(cell).T * shape                          # grid units
    fits = []
    if stride:  # candidate sites: the densest points of a sub-grid of every ``stride``-th fine point
        sub = np.argwhere(np.ones(tuple(-(-shape // stride)), bool)) * stride
        sites = sub[np.argsort(-rho[tuple(sub.T)], kind="stable")[:n_sites]]
    else:
        sites = peaks(rho, n_sites)
    if clip is not None:  # a capped map rewards templates whose every atom is in density
        rho = np.minimum(rho, clip)
    small = rotations(refine, seed=1) if refine else None
    if refine:  # small rotations: quaternions near the identity, at most ~``refine_deg`` degrees
        q = np.random.default_rng(1).normal(size=(refine, 4)) * np.array([0.0, 1, 1, 1])
        q *= np.tan(np.radians(refine_deg) / 4) / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12) * \
            np.random.default_rng(2).uniform(0, 1, (refine, 1))
        q[:, 0] = 1.0
        small = _quat_matrices(q)
    step = np.concatenate([np.zeros((1, 3)), np.eye(3), -np.eye(3)])  # symmetric: kept by the mirror
    frac = _fractionalisation(cell).T * shape
    rot = rotations(n_rotations)
    for site in sites:
        best = []
        for sign in (1.0, -1.0):  # L, then its mirror through Cα (D)
            idx = np.round(site + sign * grid).astype(np.int64) % shape
            vals = rho[idx[..., 0], idx[..., 1], idx[..., 2]]
            fit = (vals * w).sum(-1) if w.ndim == 2 else vals @ w            # (R, T)
            if refine:
                top = np.argsort(-fit.ravel(), kind="stable")[:keep]
                r_i, t_i = np.unravel_index(top, fit.shape)
                rr = np.einsum("pij,kjl->kpil", small, rot[r_i])            # (k, P, 3, 3)
                c = np.einsum("kpij,kaj->kpai", rr, tmpl[t_i]) @ frac      # (k, P, A, 3) grid units
                pos = site + sign * (c[:, :, None] + step[None, None, :, None])
                idx = np.round(pos).astype(np.int64) % shape
                fit = rho[idx[..., 0], idx[..., 1], idx[..., 2]] @ w
            best.append(float(fit.max()))
        fits.append(best)
    return np.array(fits).reshape(-1, 2)


def _quat_matrices(q: np.ndarray) -> np.ndarray:
    w, x, y, z = (q / np.linalg.norm(q, axis=1, keepdims=True)).T
    return np.stack([np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
                     np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
                     np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1)], 1)


def backbone_templates(torsions: Sequence[Sequence[float]] = TORSIONS) -> tuple[np.ndarray, np.ndarray]:
    """Backbone templates without Cβ, (2T, A−1, 3) Å, and the two Cβ positions (2T, 2, 3) Å for each —
    the L configuration first, then D — for the L (φ, ψ) in ``torsions`` and their mirror images (whose
    L and D Cβ positions swap: a mirror changes the configuration)."""
    back, cbs = [], []
    for phi, psi in torsions:
        t = residue_template(phi, psi)
        n, ca, c = t[0], t[1], t[2]
        cb_l, cb_d = t[4], _place(c, n, ca, 1.530, 110.5, 122.9)
        back.append(np.delete(t, 4, axis=0))
        cbs.append(np.stack([cb_l, cb_d]))
    back, cbs = np.array(back), np.array(cbs)
    return np.concatenate([back, -back]), np.concatenate([cbs, -cbs[:, ::-1]])


def site_votes(density: np.ndarray, cell: Any, n_sites: int = 40, n_rotations: int = 2000, stride: int = 2,
               spacing: float = 0.3, top: int = 1) -> np.ndarray:
    """(backbone fit, Cβ vote) (n_sites, 2) at the densest points of the map (rms units): the backbone
    template (both hands of every (φ, ψ)) is posed by its electron-weighted map sum over rotations; the vote is
    ρ(Cβ of the L configuration) − ρ(Cβ of the D configuration), averaged over the ``top`` best poses."""
    rho = fine_map(density, cell, spacing)
    shape = np.array(rho.shape)
    back, cbs = backbone_templates()
    w = np.delete(_ELECTRONS, 4)
    frac = _fractionalisation(cell).T * shape
    rot = rotations(n_rotations)
    gb = np.einsum("rij,taj->rtai", rot, back) @ frac                       # (R, 2T, A-1, 3) grid units
    gc = np.einsum("rij,taj->rtai", rot, cbs) @ frac                        # (R, 2T, 2, 3)
    sub = np.argwhere(np.ones(tuple(-(-shape // stride)), bool)) * stride
    sites = sub[np.argsort(-rho[tuple(sub.T)], kind="stable")[:n_sites]]
    out = []
    for site in sites:
        idx = np.round(site + gb).astype(np.int64) % shape
        fit = (rho[idx[..., 0], idx[..., 1], idx[..., 2]] @ w).ravel()
        best = np.argsort(-fit, kind="stable")[:top]
        ic = np.round(site + gc.reshape(-1, 2, 3)[best]).astype(np.int64) % shape
        v = rho[ic[..., 0], ic[..., 1], ic[..., 2]]                          # (top, 2)
        out.append([float(fit[best[0]]), float((v[:, 0] - v[:, 1]).mean())])
    return np.array(out)
