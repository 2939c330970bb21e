"""Solvent content from a U-net solvent-probability map combined with Matthews (Skubák 2024, section 2.3).

* Eq. 1: the expected solvent content <S_s> = sum_i P_i / N, P_i the probability that grid point i is
  solvent.  The paper sums over the asymmetric unit; on a symmetry-averaged whole-cell map the cell mean
  is the same number, which is what :func:`expected_solvent_content` computes.
* P_U: the empirical distribution of *logit cut-offs*.  For each training crystal the cut-off l_c that
  makes the fraction of points with logit(P_i) > l_c equal to the true solvent content is found
  (:func:`logit_cutoff`); the histogram of those cut-offs, normalised to 1, is P_U
  (:class:`LogitCutoffDistribution`, stored in the model card).  For a new map, the probability of a
  solvent content S is P_U of the cut-off that gives S on that map (:meth:`LogitCutoffDistribution.of_solvent`).
* Eq. 2 (:func:`combine`): with Matthews candidates S_Mj of probability P_M(S_Mj),
  m = max_j P_M(S_Mj) P_U(S_Mj);  S_E = S_Mjmax if m >= 0.25;  the centroid of the conflation P_M x P_U
  if 0.005 < m < 0.25;  <S_s> if m <= 0.005.  P_M is the linear interpolation through the candidates and
  the end points P_M(0) = P_M(1) = 0.  j_max is read as the candidate that attains the maximum product
  (the "high-probability Matthews estimate consistent with the map segmentation" of the text).
* The paper estimates the solvent content once, from the first (experimental) map, and keeps it fixed
  through density modification; callers should do the same.

Fractions are in [0, 1]; logits in natural-log units.  numpy only.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from crysplugins.errors import CrysError

#: Thresholds of eq. 2.
HIGH_THRESHOLD = 0.25
LOW_THRESHOLD = 0.005


def logits(prob: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """log(P / (1 - P)) with P clipped to [eps, 1 - eps]."""
    p = np.clip(np.asarray(prob, dtype=np.float64), eps, 1.0 - eps)
    return np.log(p / (1.0 - p))


def expected_solvent_content(prob: np.ndarray) -> float:
    """Eq. 1: mean solvent probability over the grid (the whole cell of a symmetry-averaged map)."""
    p = np.asarray(prob, dtype=np.float64)
    if p.size == 0:
        raise CrysError("An empty probability map has no solvent content.")
    return float(p.mean())


def logit_cutoff(prob: np.ndarray, solvent_fraction: float) -> float:
    """The logit l_c for which the fraction of points with logit(P_i) > l_c is ``solvent_fraction``."""
    if not 0.0 < solvent_fraction < 1.0:
        raise CrysError(f"A solvent fraction must lie strictly between 0 and 1, not {solvent_fraction}.")
    return float(np.quantile(logits(prob).ravel(), 1.0 - solvent_fraction))


def solvent_at_cutoff(prob: np.ndarray, cutoff: float) -> float:
    """Fraction of points with logit(P_i) > ``cutoff``."""
    return float((logits(prob) > cutoff).mean())


@dataclass(frozen=True)
class LogitCutoffDistribution:
    """The empirical P_U: bin edges (logits, ascending) and the probability of each bin (sums to 1)."""

    edges: tuple[float, ...]
    probabilities: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.edges) != len(self.probabilities) + 1 or len(self.probabilities) == 0:
            raise CrysError("A logit cut-off distribution needs one more bin edge than probabilities.")
        if np.any(np.diff(self.edges) <= 0):
            raise CrysError("The bin edges of a logit cut-off distribution must increase.")

    @classmethod
    def from_cutoffs(cls, cutoffs: Sequence[float], edges: Sequence[float]) -> "LogitCutoffDistribution":
        """Histogram of training-set cut-offs over ``edges`` (values outside go to the end bins)."""
        e = np.asarray(edges, dtype=np.float64)
        c = np.clip(np.asarray(cutoffs, dtype=np.float64), e[0], e[-1])
        counts, _ = np.histogram(c, bins=e)
        if counts.sum() == 0:
            raise CrysError("No logit cut-offs to build P_U from.")
        return cls(tuple(float(x) for x in e), tuple(float(x) for x in counts / counts.sum()))

    @classmethod
    def from_card(cls, card: dict) -> "LogitCutoffDistribution":
        try:
            return cls(tuple(card["edges"]), tuple(card["probabilities"]))
        except (KeyError, TypeError):
            raise CrysError("The model card has no usable logit cut-off distribution (P_U).") from None

    def to_card(self) -> dict:
        return {"edges": [round(x, 4) for x in self.edges], "probabilities": [round(x, 6) for x in self.probabilities]}

    def of_cutoff(self, cutoff: float | np.ndarray) -> np.ndarray:
        """P_U of the bin holding each logit cut-off (0 outside the histogram)."""
        e = np.asarray(self.edges)
        p = np.asarray(self.probabilities)
        c = np.asarray(cutoff, dtype=np.float64)
        idx = np.searchsorted(e, c, side="right") - 1
        inside = (c >= e[0]) & (c <= e[-1])
        idx = np.clip(idx, 0, len(p) - 1)
        return np.where(inside, p[idx], 0.0)

    def of_cutoff_interpolated(self, cutoff: float | np.ndarray) -> np.ndarray:
        """P_U read piecewise-linearly through the bin centres (0 at the outer edges).

        The step histogram jumps by up to 0.4 at a bin edge, so a Matthews value whose cut-off lies just
        past an edge fell below the 0.25 threshold of eq. 2 and was pulled to the U-net's value; read
        between bin centres, P_U keeps its scale (probability per bin) without the edge artefact.
        """
        e = np.asarray(self.edges)
        centres = 0.5 * (e[:-1] + e[1:])
        xs = np.concatenate([[e[0]], centres, [e[-1]]])
        ys = np.concatenate([[0.0], np.asarray(self.probabilities), [0.0]])
        return np.interp(np.asarray(cutoff, dtype=np.float64), xs, ys, left=0.0, right=0.0)

    def of_solvent(self, prob: np.ndarray, solvent: float | np.ndarray, interpolate: bool = True) -> np.ndarray:
        """P_U(S) on this map: P_U of the cut-off that makes the solvent fraction S.

        ``interpolate`` reads P_U between bin centres (:meth:`of_cutoff_interpolated`, the default: lower
        solvent-content error on held-out crystals); ``False`` reads the step histogram of the paper.
        """
        s = np.atleast_1d(np.asarray(solvent, dtype=np.float64))
        lg = np.sort(logits(prob).ravel())
        q = np.clip(1.0 - s, 0.0, 1.0)
        cut = np.quantile(lg, q)
        out = self.of_cutoff_interpolated(cut) if interpolate else self.of_cutoff(cut)
        out = np.where((s > 0.0) & (s < 1.0), out, 0.0)
        return out if np.ndim(solvent) else out[:1]


@dataclass
class CombinedEstimate:
    """Result of eq. 2."""

    solvent_fraction: float
    branch: str               # "matthews", "conflation" or "unet"
    max_product: float        # max_j P_M(S_Mj) P_U(S_Mj)
    j_max: int                # index of the Matthews candidate attaining it
    expected: float           # <S_s> (eq. 1)
    products: list[float] = field(default_factory=list)


def conflation_centroid(matthews_s: Sequence[float], matthews_p: Sequence[float], pu_of_s, n: int = 2001) -> float:
    """Centroid of P_M(S) x P_U(S) on [0, 1]; P_M linear through the candidates and (0, 0), (1, 0).

    ``pu_of_s`` maps an array of solvent fractions to P_U values.  Returns NaN when the product is zero.
    """
    order = np.argsort(matthews_s)
    xs = np.concatenate([[0.0], np.asarray(matthews_s, dtype=np.float64)[order], [1.0]])
    ys = np.concatenate([[0.0], np.asarray(matthews_p, dtype=np.float64)[order], [0.0]])
    grid = np.linspace(0.0, 1.0, n)
    prod = np.interp(grid, xs, ys) * np.asarray(pu_of_s(grid), dtype=np.float64)
    total = prod.sum()
    return float((grid * prod).sum() / total) if total > 0 else float("nan")


def combine(matthews_s: Sequence[float], matthews_p: Sequence[float], pu_of_s, expected: float,
            high: float = HIGH_THRESHOLD, low: float = LOW_THRESHOLD) -> CombinedEstimate:
    """Eq. 2 from Matthews candidates (fractions, probabilities), a P_U function and <S_s>.

    ``pu_of_s(array of S) -> array of P_U(S)``, e.g. ``lambda s: dist.of_solvent(prob_map, s)``.
    """
    s = np.asarray(matthews_s, dtype=np.float64)
    p = np.asarray(matthews_p, dtype=np.float64)
    if s.size == 0 or s.size != p.size:
        raise CrysError("The Matthews estimate needs at least one candidate with a probability.")
    products = p * np.asarray(pu_of_s(s), dtype=np.float64)
    j = int(np.argmax(products))
    m = float(products[j])
    if m >= high:
        return CombinedEstimate(float(s[j]), "matthews", m, j, expected, products.tolist())
    if m > low:
        c = conflation_centroid(s, p, pu_of_s)
        if np.isfinite(c):
            return CombinedEstimate(c, "conflation", m, j, expected, products.tolist())
    return CombinedEstimate(float(expected), "unet", m, j, expected, products.tolist())
