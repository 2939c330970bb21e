"""Phase probabilities as Hendrickson–Lattman coefficients (Hendrickson & Lattman 1970, Acta Cryst. B26,
136–143): P(φ) ∝ exp(A cos φ + B sin φ + C cos 2φ + D sin 2φ).

* acentric reflections: best phase and figure of merit are the argument and modulus of the centroid
  ∫P(φ)e^{iφ}dφ / ∫P(φ)dφ; for unimodal coefficients (C = D = 0) that is φ = atan2(B, A) and
  m = I1(κ)/I0(κ) with κ = √(A² + B²), otherwise it is integrated numerically on ``STEPS`` phases;
* centric reflections can only take φ_c or φ_c + 180° (φ_c from the space group); C and D cancel and
  m = tanh(|x|) with x = A cos φ_c + B sin φ_c, the phase φ_c when x > 0.

Independent sources of phase information combine by adding their coefficients.  Phases in radians here.
"""
from __future__ import annotations

import numpy as np

#: Phase steps for the numerical centroid of bimodal (C, D ≠ 0) distributions.
STEPS = 72
#: Largest figure of merit (keeps κ and atanh finite).
MAX_FOM = 0.999

_KAPPA = np.concatenate([[0.0], np.logspace(-3, 3.3, 900)])
_THETA = np.linspace(0.0, np.pi, 2001)
_W = np.exp(_KAPPA[:, None] * (np.cos(_THETA)[None, :] - 1.0))
_FOM = (_W * np.cos(_THETA)).sum(1) / _W.sum(1)  # I1(κ)/I0(κ), increasing
del _W


def fom_from_kappa(kappa: np.ndarray) -> np.ndarray:
    """m = I1(κ)/I0(κ), the expected cosine of the error of a von Mises phase of concentration κ."""
    return np.interp(np.asarray(kappa, dtype=np.float64), _KAPPA, _FOM)


def kappa_from_fom(fom: np.ndarray) -> np.ndarray:
    """Inverse of :func:`fom_from_kappa` (FOM clipped to [0, MAX_FOM])."""
    m = np.clip(np.asarray(fom, dtype=np.float64), 0.0, MAX_FOM)
    return np.interp(m, _FOM, _KAPPA)


def hl_from_phase_fom(phi: np.ndarray, fom: np.ndarray, centric: np.ndarray) -> np.ndarray:
    """(n, 4) unimodal HL coefficients for best phases ``phi`` (radians) and figures of merit ``fom``.

    Acentric: κ = (I1/I0)⁻¹(m); centric: x = atanh(m), so that :func:`phase_fom_from_hl` gives back m."""
    m = np.clip(np.asarray(fom, dtype=np.float64), 0.0, MAX_FOM)
    k = np.where(centric, np.arctanh(m), kappa_from_fom(m))
    out = np.zeros((len(m), 4))
    out[:, 0] = k * np.cos(phi)
    out[:, 1] = k * np.sin(phi)
    return out


def phase_fom_from_hl(hl: np.ndarray, centric: np.ndarray, centric_phase: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(best phase in radians, figure of merit) of HL coefficients (n, 4); see the module docstring."""
    hl = np.asarray(hl, dtype=np.float64)
    a, b = hl[:, 0], hl[:, 1]
    if np.any(hl[:, 2:] != 0):
        phi, m = _centroid_numeric(hl)
    else:
        phi, m = np.arctan2(b, a), fom_from_kappa(np.hypot(a, b))
    if np.any(centric):
        c = np.asarray(centric, dtype=bool)
        x = a[c] * np.cos(centric_phase[c]) + b[c] * np.sin(centric_phase[c])
        phi = phi.copy()
        m = m.copy()
        phi[c] = np.where(x >= 0, centric_phase[c], centric_phase[c] + np.pi)
        m[c] = np.tanh(np.abs(x))
    return phi, m


def _centroid_numeric(hl: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t = np.linspace(0.0, 2 * np.pi, STEPS, endpoint=False)
    basis = np.stack([np.cos(t), np.sin(t), np.cos(2 * t), np.sin(2 * t)])  # (4, STEPS)
    log_p = hl @ basis
    p = np.exp(log_p - log_p.max(axis=1, keepdims=True))
    z = (p * np.exp(1j * t)).sum(1) / p.sum(1)
    return np.angle(z), np.abs(z)

