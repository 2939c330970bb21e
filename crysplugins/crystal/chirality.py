"""Chirality (hand) features of a density map: rotation-invariant pseudoscalars (numpy + gemmi; no torch).

A Patterson map cannot tell a fragment from its inverse through the cell centre (RecCrysFormer paper 000,
section 3: the Patterson function is centrosymmetric).  Only chemistry can: proteins hold L-amino acids.
This module measures the handedness of a map with quantities that

* do not change under a proper rotation of the density (they are built from dot and cross products of
  Cartesian vectors that rotate together), and
* change sign under inversion, ρ(x) → ρ(−x) (they are triple products of an odd number of vectors that
  flip sign), so a linear function of them without intercept is antisymmetric by construction:
  the score of the inverted map is minus the score of the map.

For a blur σ (Å; Gaussian, structure factors times exp(−2π²σ²s²)), the fields are the blurred map
ρ_σ, its gradient g_σ = ∇ρ_σ (1/Å) and its Hessian H_σ (1/Å²), all by FFT on the cell's Cartesian frame
(gemmi's orthogonalisation; s = Fᵀh with F the fractionalisation matrix).  The pseudoscalar fields are

* t_σ = g·(Hg × H²g) at one blur (a local "twist" of the density's gradient flow), also normalised by
  |g||Hg||H²g|;
* g_a·(g_b × g_c), gradients at three different blurs;
* g_a·(H_a g_a × g_c), mixed;
* (``pseudoscalar-v2`` only) c_ab·g_a and c_ab·g_b, with c_ab the axial vector of the Hessian commutator
  H_a H_b − H_b H_a of two blurs a < b (first order in the gradient; summed with all three weights).

Each field is summed over the cell with the weights uniform, ρ₊ = max(ρ, 0) (normalised to sum 1) and
ρ₊² (likewise): t_σ with all three, the normalised twist with ρ₊ and ρ₊², the gradient triples with
uniform and ρ₊, the mixed terms with ρ₊; see :func:`pseudoscalar_features` for the order.  Each entry is
compressed by a signed cube root (sign kept, so the antisymmetry holds).  :mod:`crysplugins.runtime.hand`
turns the vector into a hand decision with weights fitted by :mod:`crysplugins.training.hand_chirality`.
:func:`voxel_fields` keeps the same kinds of fields voxel by voxel, with the voxel's scalars beside them, for a
hand head that weighs each voxel (:mod:`crysplugins.training.hand_gated`).

Units: σ in Å, gradients in map units/Å, Hessians in map units/Å².  The features are not scale-free
(ρ → cρ scales the groups differently), so fitted weights hold only for maps on the scale they were fitted
on: the normalised maps of a RecCrysFormer card (dataset normalisation, values in [−1, 1]), or rms units
(``input: refined`` cards, e.g. the fragment hand model fitted on true maps).
"""
from __future__ import annotations

import itertools
from typing import Sequence

import gemmi
import numpy as np

#: blurs (Å) of the shipped feature set ``pseudoscalar-v1``
SIGMAS: tuple[float, ...] = (0.0, 0.3, 0.5, 0.7, 0.9, 1.2, 1.6, 2.0)
FEATURE_SET = "pseudoscalar-v1"
#: every feature set :func:`pseudoscalar_features` computes (v2 adds the Hessian-commutator terms)
FEATURE_SETS: tuple[str, ...] = ("pseudoscalar-v1", "pseudoscalar-v2")
#: the per-voxel feature set of :func:`voxel_fields` (a ``gated`` hand head reads it), its blurs (Å) and how many
#: voxels (the densest) it keeps: about the volume of two to five residues at these grids' spacing (d_min / 2.5)
VOXEL_FEATURE_SET = "voxel-gated-v1"
VOXEL_SIGMAS: tuple[float, ...] = (0.3, 0.5, 0.7, 0.9, 1.2)
VOXEL_COUNT = 512
#: feature sets whose vector begins with another set's whole vector (pseudoscalar-v2 appends the Hessian-commutator
#: terms to pseudoscalar-v1's entries, same blurs, same order)
FEATURE_PREFIXES: dict[str, tuple[str, ...]] = {"pseudoscalar-v1": (), "pseudoscalar-v2": ("pseudoscalar-v1",)}
_AXES = (0, 1, 2)


def _cell(cell) -> gemmi.UnitCell:
    if isinstance(cell, gemmi.UnitCell):
        return cell
    return gemmi.UnitCell(*[float(x) for x in cell])


def reciprocal_vectors(cell, shape: Sequence[int]) -> tuple[list[np.ndarray], np.ndarray]:
    """Cartesian reciprocal-space components (s_x, s_y, s_z) (1/Å) on the ``rfftn`` half grid of ``shape``,
    and s² (1/Å²).  ``cell``: gemmi.UnitCell or (a, b, c, α, β, γ) in Å and degrees."""
    frac = np.array(_cell(cell).frac.mat.tolist())  # x_frac = F x_cart, so s_cart = Fᵀ h
    n = tuple(int(v) for v in shape)
    h = np.meshgrid(np.fft.fftfreq(n[0]) * n[0], np.fft.fftfreq(n[1]) * n[1], np.fft.rfftfreq(n[2]) * n[2],
                    indexing="ij")
    s = [frac[0, i] * h[0] + frac[1, i] * h[1] + frac[2, i] * h[2] for i in range(3)]
    return s, s[0] ** 2 + s[1] ** 2 + s[2] ** 2


def _triple(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """a·(b × c) for vector fields of shape (3, N1, N2, N3)."""
    return (a[0] * (b[1] * c[2] - b[2] * c[1]) + a[1] * (b[2] * c[0] - b[0] * c[2])
            + a[2] * (b[0] * c[1] - b[1] * c[0]))


def _matvec(h: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.einsum("ij...,j...->i...", h, v)


def _fields(spectrum: np.ndarray, s: list[np.ndarray], s2: np.ndarray, sigma: float, n: tuple[int, ...]
            ) -> tuple[np.ndarray, np.ndarray]:
    """Gradient (3, N1, N2, N3) and Hessian (3, 3, N1, N2, N3) of the map blurred by σ (Å), by FFT."""
    blurred = spectrum * np.exp(-2 * np.pi ** 2 * sigma ** 2 * s2)
    g = np.stack([np.fft.irfftn(2j * np.pi * s[i] * blurred, n, axes=_AXES) for i in range(3)])
    h = np.empty((3, 3) + n)
    for i in range(3):
        for j in range(i, 3):
            h[i, j] = h[j, i] = np.fft.irfftn(-4 * np.pi ** 2 * s[i] * s[j] * blurred, n, axes=_AXES)
    return g, h


def _commutator_axial(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The axial vector of the antisymmetric matrix AB − BA for symmetric matrix fields (3, 3, ...): it turns
    with proper rotations and is even under inversion, so its dot product with a gradient is a pseudoscalar."""
    ab = np.einsum("ij...,jk...->ik...", a, b)
    m = ab - np.swapaxes(ab, 0, 1)
    return np.stack([m[1, 2], m[2, 0], m[0, 1]])


def _signed_cbrt(a: np.ndarray) -> np.ndarray:
    """sign(a)·|a|^(1/3): compresses a feature's range and stays odd, so inversion still negates it."""
    return np.sign(a) * np.abs(a) ** (1.0 / 3.0)


def _map_spectrum(density: np.ndarray, cell, caller: str
                  ) -> tuple[np.ndarray, list[np.ndarray], np.ndarray, np.ndarray]:
    """(map as float64, Cartesian s (1/Å), s², rfftn spectrum) of a 3-D whole-cell map; ValueError otherwise."""
    rho = np.asarray(density, dtype=np.float64)
    if rho.ndim != 3:
        raise ValueError(f"{caller} needs a 3-D map")
    s, s2 = reciprocal_vectors(cell, rho.shape)
    return rho, s, s2, np.fft.rfftn(rho, axes=_AXES)


def pseudoscalar_features(density: np.ndarray, cell, sigmas: Sequence[float] = SIGMAS,
                          feature_set: str = FEATURE_SET) -> np.ndarray:
    """The chirality feature vector of a whole-cell map (N1, N2, N3) on the grid of ``cell`` (P 1).

    Invariant under proper rotations of the content, negated by inversion (see the module docstring).
    ``pseudoscalar-v1``: 5·S + 2·C(S, 3) + S·(S − 1) entries for S blurs (208 for the default 8);
    ``pseudoscalar-v2`` appends, for every pair of blurs a < b, the Hessian commutator's axial vector
    dotted with g_a and with g_b, each summed with the uniform, ρ₊ and ρ₊² weights (6·C(S, 2) more; 376).
    """
    if feature_set not in FEATURE_SETS:
        raise ValueError(f"unknown chirality feature set {feature_set!r}")
    rho, s, s2, spectrum = _map_spectrum(density, cell, "pseudoscalar_features")
    n = rho.shape
    w1 = np.clip(rho, 0, None)
    w1 = w1 / (w1.sum() + 1e-12)
    w2 = w1 ** 2
    w2 = w2 / (w2.sum() + 1e-12)
    grads, hessians, feats = [], [], []
    for sigma in sigmas:
        g, h = _fields(spectrum, s, s2, sigma, n)
        grads.append(g)
        hessians.append(h)
        hg = _matvec(h, g)
        hhg = _matvec(h, hg)
        t = _triple(g, hg, hhg)
        tn = t / (np.sqrt((g ** 2).sum(0) * (hg ** 2).sum(0) * (hhg ** 2).sum(0)) + 1e-12)
        feats += [t.mean(), (t * w1).sum(), (t * w2).sum(), (tn * w1).sum(), (tn * w2).sum()]
    for a, b, c in itertools.combinations(range(len(grads)), 3):
        t = _triple(grads[a], grads[b], grads[c])
        feats += [t.mean(), (t * w1).sum()]
    for a in range(len(grads)):
        hg = _matvec(hessians[a], grads[a])
        for c in range(len(grads)):
            if a != c:
                feats.append((_triple(grads[a], hg, grads[c]) * w1).sum())
    if feature_set == "pseudoscalar-v2":
        for a, b in itertools.combinations(range(len(grads)), 2):
            axial = _commutator_axial(hessians[a], hessians[b])
            for k in (a, b):
                p = (axial * grads[k]).sum(0)
                feats += [p.mean(), (p * w1).sum(), (p * w2).sum()]
    return _signed_cbrt(np.array(feats))


def voxel_fields(density: np.ndarray, cell, sigmas: Sequence[float] = VOXEL_SIGMAS,
                 count: int = VOXEL_COUNT) -> tuple[np.ndarray, np.ndarray]:
    """Scalar and pseudoscalar fields at the densest voxels of a whole-cell map (N1, N2, N3) in rms units (P 1).

    Where :func:`pseudoscalar_features` sums each pseudoscalar field over the cell with fixed weights, these are
    the fields voxel by voxel, so that a hand head can weigh each voxel's chirality by what surrounds it (a
    ``gated`` head: the weights are a function of the voxel's scalars).  Kept: the ``count`` voxels (all, in a
    smaller grid) where the map blurred by the first σ is highest (a scalar choice, so the inverted map keeps the
    inverted voxels).  Per blur σ (Å): scalars ρ_σ, |g_σ| (1/Å), the Hessian's trace (1/Å²) and the signed cube roots of
    its second invariant and determinant; pseudoscalars the twist t_σ and its normalised form.  Across blurs:
    the gradient triples g_a·(g_b × g_c) and the Hessian commutator's axial vector dotted with g_a and g_b.
    Every pseudoscalar is compressed by a signed cube root (odd, so inversion still negates it).

    Returns (scalars (V, 5·S), pseudoscalars (V, 2·S + C(S, 3) + 2·C(S, 2))), float32; 25 and 40 for S = 5.
    A proper rotation of the content leaves both unchanged; the inversion ρ(x) → ρ(−x) keeps the scalars and
    negates the pseudoscalars."""
    rho, s, s2, spectrum = _map_spectrum(density, cell, "voxel_fields")
    n = rho.shape
    grads, hessians, scalars, pseudo = [], [], [], []
    for sigma in sigmas:
        g, h = _fields(spectrum, s, s2, sigma, n)
        grads.append(g)
        hessians.append(h)
        blurred = np.fft.irfftn(spectrum * np.exp(-2 * np.pi ** 2 * sigma ** 2 * s2), n, axes=_AXES)
        second = (h[0, 0] * h[1, 1] + h[1, 1] * h[2, 2] + h[0, 0] * h[2, 2]
                  - h[0, 1] ** 2 - h[1, 2] ** 2 - h[0, 2] ** 2)
        det = np.linalg.det(np.moveaxis(h, (0, 1), (-2, -1)))
        scalars += [blurred, np.sqrt((g ** 2).sum(0)), h[0, 0] + h[1, 1] + h[2, 2], _signed_cbrt(second),
                    _signed_cbrt(det)]
        hg = _matvec(h, g)
        hhg = _matvec(h, hg)
        t = _triple(g, hg, hhg)
        pseudo += [t, t / (np.sqrt((g ** 2).sum(0) * (hg ** 2).sum(0) * (hhg ** 2).sum(0)) + 1e-12)]
    for a, b, c in itertools.combinations(range(len(grads)), 3):
        pseudo.append(_triple(grads[a], grads[b], grads[c]))
    for a, b in itertools.combinations(range(len(grads)), 2):
        axial = _commutator_axial(hessians[a], hessians[b])
        pseudo += [(axial * grads[a]).sum(0), (axial * grads[b]).sum(0)]
    scalar = np.stack(scalars).reshape(len(scalars), -1)
    keep = np.argsort(-scalar[0], kind="stable")[:max(1, int(count))]
    pseudo_kept = _signed_cbrt(np.stack(pseudo).reshape(len(pseudo), -1)[:, keep])
    return scalar[:, keep].T.astype(np.float32), pseudo_kept.T.astype(np.float32)


def n_voxel_fields(n_sigmas: int) -> tuple[int, int]:
    """(scalars, pseudoscalars) per voxel of :func:`voxel_fields` for ``n_sigmas`` blurs."""
    s = int(n_sigmas)
    return 5 * s, 2 * s + s * (s - 1) * (s - 2) // 6 + s * (s - 1)


def n_features(n_sigmas: int, feature_set: str = FEATURE_SET) -> int:
    """Length of :func:`pseudoscalar_features` for ``n_sigmas`` blurs."""
    s = int(n_sigmas)
    n = 5 * s + 2 * (s * (s - 1) * (s - 2) // 6) + s * (s - 1)
    return n + 6 * (s * (s - 1) // 2) if feature_set == "pseudoscalar-v2" else n


def hand_score(features: np.ndarray, weights: Sequence[float], scale: Sequence[float]) -> np.ndarray:
    """Linear, intercept-free score of feature vectors (..., F): > 0 means "L-amino acids as shown".

    ``scale`` (F,) divides the features first (the mean |feature| on the training maps)."""
    f = np.asarray(features, dtype=np.float64) / np.asarray(scale, dtype=np.float64)
    return f @ np.asarray(weights, dtype=np.float64)
