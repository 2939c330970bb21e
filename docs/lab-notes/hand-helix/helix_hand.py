"""The hand of a map from its α-helices: an ideal right-handed helix against its mirror image.

α-helices of L-amino acids are right-handed, and at 2–2.5 Å the helical backbone is resolved well enough
that its twist shows where single Cα centres do not.  An ideal poly-Ala helix (N, CA, C, O, CB; φ −57.8°,
ψ −47.0°) is searched over rotations with an FFT translation search; its mirror image is searched with the
same FFT (the mirror's transform is the conjugate), so the two scores come from identical searches and the
score difference of a map and of its inverse are exactly opposite.
"""
from __future__ import annotations

from typing import Sequence

import gemmi
import numpy as np

#: Backbone geometry (Engh & Huber), Å and degrees.
BONDS = {"N-CA": 1.458, "CA-C": 1.525, "C-N": 1.329, "C-O": 1.231, "CA-CB": 1.53}
ANGLES = {"N-CA-C": 111.2, "CA-C-N": 116.2, "C-N-CA": 121.7, "CA-C-O": 120.5}
ALPHA_PHI, ALPHA_PSI = -57.8, -47.0
#: Electrons of the template atoms (their ratio is what matters).
ELECTRONS = {"N": 7.0, "C": 6.0, "O": 8.0}


def _place(a: np.ndarray, b: np.ndarray, c: np.ndarray, bond: float, angle: float, torsion: float) -> np.ndarray:
    """Atom d bonded to c with |cd| = bond (Å), angle b-c-d and torsion a-b-c-d (degrees): the NeRF step."""
    angle, torsion = np.radians(angle), np.radians(torsion)
    bc = (c - b) / np.linalg.norm(c - b)
    n = np.cross(b - a, bc)
    n /= np.linalg.norm(n)
    m = np.stack([bc, np.cross(n, bc), n], axis=1)
    d2 = bond * np.array([-np.cos(angle), np.sin(angle) * np.cos(torsion), np.sin(angle) * np.sin(torsion)])
    return c + m @ d2


def ideal_helix(residues: int, phi: float = ALPHA_PHI, psi: float = ALPHA_PSI) -> tuple[np.ndarray, list[str]]:
    """Poly-Ala helix of ``residues`` residues (N, CA, C, O, CB each; L Cβ), centred, axis along z.

    Returns positions (n, 3) in Å and their elements."""
    n = np.array([0.0, 1.0, 0.0])
    ca = np.array([0.0, 0.0, 0.0])
    c = ca + BONDS["CA-C"] * np.array([np.sin(np.radians(ANGLES["N-CA-C"])), np.cos(np.radians(ANGLES["N-CA-C"])), 0])
    n = ca + BONDS["N-CA"] * n
    backbone = [n, ca, c]
    for _ in range(residues - 1):
        n_, ca_, c_ = backbone[-3:]
        n1 = _place(n_, ca_, c_, BONDS["C-N"], ANGLES["CA-C-N"], psi)
        ca1 = _place(ca_, c_, n1, BONDS["N-CA"], ANGLES["C-N-CA"], 180.0)
        c1 = _place(c_, n1, ca1, BONDS["CA-C"], ANGLES["N-CA-C"], phi)
        backbone += [n1, ca1, c1]
    atoms, elements = [], []
    for i in range(residues):
        n_, ca_, c_ = backbone[3 * i:3 * i + 3]
        o = _place(n_, ca_, c_, BONDS["C-O"], ANGLES["CA-C-O"], psi + 180.0)
        # L-Cβ: the ideal tetrahedral position, on the side of N×C that makes the chirality volume positive
        b1, b2 = n_ - ca_, c_ - ca_
        b1, b2 = b1 / np.linalg.norm(b1), b2 / np.linalg.norm(b2)
        bis = -(b1 + b2) / np.linalg.norm(b1 + b2)
        perp = np.cross(b1, b2)
        perp /= np.linalg.norm(perp)
        cb = ca_ + BONDS["CA-CB"] * (np.cos(np.radians(54.75)) * bis + np.sin(np.radians(54.75)) * perp)
        atoms += [n_, ca_, c_, o, cb]
        elements += ["N", "C", "C", "O", "C"]
    xyz = np.array(atoms)
    return _axis_along_z(xyz, np.array(backbone[:6])), elements


def _axis_along_z(xyz: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """Centre ``xyz`` and turn the helix axis onto z: the axis of the rotation that takes the first residue's
    N, CA, C (``frames[:3]``) onto the second's (``frames[3:6]``), pointing from N- to C-terminus."""
    a, b = frames[:3] - frames[:3].mean(0), frames[3:6] - frames[3:6].mean(0)
    u, _, vt = np.linalg.svd(a.T @ b)
    rot = (u @ np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))]) @ vt).T  # Kabsch: rot @ a_i ≈ b_i
    w, v = np.linalg.eig(rot)
    axis = np.real(v[:, np.argmin(np.abs(w - 1.0))])
    centre = xyz.mean(axis=0)
    axis = axis if axis @ (xyz[-4] - xyz[1]) > 0 else -axis
    return (xyz - centre) @ _rotation_onto(axis / np.linalg.norm(axis), np.array([0.0, 0.0, 1.0])).T


def _rotation_onto(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """The rotation matrix taking unit vector ``u`` onto unit vector ``v`` (Rodrigues)."""
    w = np.cross(u, v)
    s, c = np.linalg.norm(w), float(u @ v)
    if s < 1e-12:
        return np.eye(3) if c > 0 else np.diag([1.0, -1.0, -1.0]) if abs(u[0]) < 0.9 else np.diag([-1.0, 1.0, -1.0])
    k = w / s
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + s * kx + (1 - c) * kx @ kx


def rotations(directions: int, spins: int) -> np.ndarray:
    """Rotations (m, 3, 3) taking z onto ``directions`` near-uniform axis directions (a Fibonacci sphere), each
    with ``spins`` turns about the axis over 0–100° (one helical residue step: the translation search covers the
    rest)."""
    i = np.arange(directions) + 0.5
    z = 1 - 2 * i / directions
    r, t = np.sqrt(1 - z * z), np.pi * (1 + 5 ** 0.5) * i
    dirs = np.stack([r * np.cos(t), r * np.sin(t), z], axis=1)
    out = []
    for d in dirs:
        align = _rotation_onto(np.array([0.0, 0.0, 1.0]), d)
        for a in np.radians(np.arange(spins) * 100.0 / spins):
            spin = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
            out.append(align @ spin)
    return np.array(out)


def helix_hand_scores(density: np.ndarray, cell: Sequence[float] | gemmi.UnitCell, d_min: float,
                      residues: int = 6, directions: int = 300, spins: int = 2, b_iso: float = 30.0) -> dict:
    """Best correlations of a right-handed α-helix and of its mirror image with ``density`` (any P1 grid of
    ``cell``), over ``directions`` × ``spins`` rotations and every grid translation.

    Returns ``right`` and ``left`` (the best normalised correlations) and ``right_top``/``left_top`` (the mean
    of the 5 best rotations' maxima).  For the inverted map the two swap exactly."""
    cell = cell if isinstance(cell, gemmi.UnitCell) else gemmi.UnitCell(*[float(v) for v in cell])
    rho = np.asarray(density, dtype=np.float64)
    shape = rho.shape
    f_map = np.fft.rfftn(rho - rho.mean())
    h = np.fft.fftfreq(shape[0], 1.0 / shape[0])
    k = np.fft.fftfreq(shape[1], 1.0 / shape[1])
    l = np.arange(shape[2] // 2 + 1, dtype=float)
    hkl = np.stack(np.meshgrid(h, k, l, indexing="ij"), axis=-1).reshape(-1, 3)
    frac = np.array(cell.frac.mat)
    s = hkl @ frac  # reciprocal vectors s = Fᵀh, Å⁻¹
    s2 = (s * s).sum(1)
    keep = (s2 <= 1.0 / d_min**2) & (s2 > 0)
    hkl_k, s2_k = hkl[keep], s2[keep]
    xyz, elements = ideal_helix(residues)
    weights = np.array([ELECTRONS[e] for e in elements])
    envelope = np.exp(-b_iso * s2_k / 4.0)
    # the rfft half-space counts l = 0 and the Nyquist plane once, the rest twice (for norms)
    multiplicity = np.where((hkl_k[:, 2] == 0) | (hkl_k[:, 2] == shape[2] // 2), 1.0, 2.0)
    m_keep = f_map.reshape(-1)[keep]
    m_norm = np.sqrt((multiplicity * np.abs(m_keep) ** 2).sum())
    right, left = [], []
    full = np.zeros(f_map.size, dtype=np.complex128)
    for rot in rotations(directions, spins):
        pos = (xyz @ rot.T) @ frac.T  # fractional
        t = (np.exp(-2j * np.pi * (hkl_k @ pos.T)) * weights).sum(1) * envelope
        norm = m_norm * np.sqrt((multiplicity * np.abs(t) ** 2).sum())
        full[keep] = m_keep * np.conj(t)
        right.append(np.fft.irfftn(full.reshape(f_map.shape), s=shape).max() * rho.size / norm)
        full[keep] = m_keep * t
        left.append(np.fft.irfftn(full.reshape(f_map.shape), s=shape).max() * rho.size / norm)
    right, left = np.sort(right)[::-1], np.sort(left)[::-1]
    return {"right": float(right[0]), "left": float(left[0]),
            "right_top": float(right[:5].mean()), "left_top": float(left[:5].mean())}
