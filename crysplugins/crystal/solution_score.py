"""An amplitude-only score of a phasing solution of a P1 fragment crystal (never the true phases).

A candidate is a set of phases (after density modification) for the observed reflections.  Its features:

* ``dm_log`` = −log10(1 − CC), CC the density-modification score (|F_mod| with |F_obs|) the refiner
  reports: right maps of these high-solvent cells reach CC 0.97–0.9998, so the log spreads them out;
* ``d_min`` (Å) of the data: the CC a right map reaches falls with resolution;

and, when it is one of several candidates for the same data (independent charge-flipping starts):

* ``agreement`` — its best origin- and hand-invariant correlation with any other candidate,
  Σ E² cos(Δφ − 2πh·t) / Σ E² maximised over the shift t and both hands
  (:func:`crysplugins.crystal.origin.search_origin_hand`).  Right solutions recur from independent starts
  while wrong ones do not: the experience of SHELXD's many trials (Schneider & Sheldrick, Acta Cryst. D58,
  1772 (2002));
* ``dm_gain`` — its ``dm_log`` above the median of the candidates' (a right map stands out of the wrong
  ones that the same data give).

Also here, measured but not in the shipped models (alone they separated right from wrong candidates of
2.0–2.5 Å data with ROC AUC 0.3–0.7, and added nothing to the above): ``peak_cc``, the peak-list CC of
SHELXD (the ``n_atoms`` highest map peaks as equal point atoms, CC of their |E_calc| with |E_obs|), and
the map's ``skewness`` (atomicity).

:class:`SolutionScore` is a logistic model, P(right) = 1 / (1 + exp(−(b + Σ w_i (x_i − m_i) / s_i))), one
for a lone candidate and one for a candidate among ``MIN_SET`` or more; the coefficients are data
(``crysplugins/data/solution_score.json``, fitted on a development subset of held-out fragments by
``benchmarks/fit_solution_score.py``).  "Right" means an origin- and hand-invariant phase error below 60°
(the label of the fit, never used at inference).  numpy + gemmi only.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Mapping

import gemmi
import numpy as np

from crysplugins.crystal.fourier import fourier_grid
from crysplugins.crystal.origin import search_origin_hand
from crysplugins.interface import Sequence

COEFFICIENTS = Path(__file__).resolve().parents[1] / "data" / "solution_score.json"
SINGLE_FEATURES = ("dm_log", "d_min")
SET_FEATURES = SINGLE_FEATURES + ("agreement", "dm_gain")
MIN_SET = 3  # candidates needed before the set features are used


def expected_atoms(sequence: Sequence | str) -> int:
    """Number of non-hydrogen atoms of a peptide (standard residues + one terminal OXT)."""
    from crysplugins.crystal.standardise import monomers

    seq = sequence if isinstance(sequence, Sequence) else Sequence(str(sequence))
    table = monomers()
    return int(sum(len(table[ch]["atoms"]) for ch in seq.residues) + 1)


def agreement(hkl: np.ndarray, e_obs: np.ndarray, phases: np.ndarray, other: np.ndarray) -> float:
    """Origin- and hand-invariant correlation of two phase sets (degrees) with |E|² weights, in [−1, 1]."""
    return float(search_origin_hand(hkl, e_obs, other, phases).score)


def agreements(hkl: np.ndarray, e_obs: np.ndarray, phase_sets: list[np.ndarray]) -> np.ndarray:
    """Best :func:`agreement` of every phase set with any other one (0 when there is no other)."""
    n = len(phase_sets)
    best = np.zeros(n)
    for i in range(n):
        for j in range(i + 1, n):
            a = agreement(hkl, e_obs, phase_sets[i], phase_sets[j])
            best[i], best[j] = max(best[i], a), max(best[j], a)
    return best


def dm_log(cc: float) -> float:
    """−log10(1 − CC), capped at 6 (CC = 0.999999)."""
    return float(-np.log10(max(1.0 - float(cc), 1e-6)))


def set_features(hkl: np.ndarray, e_obs: np.ndarray, phase_sets: list[np.ndarray],
                 dm_logs: list[float]) -> list[dict[str, float]]:
    """``agreement`` and ``dm_gain`` of every candidate of one data set (phases in degrees)."""
    agree = agreements(hkl, e_obs, phase_sets)
    med = float(np.median(dm_logs)) if dm_logs else 0.0
    return [{"agreement": float(a), "dm_gain": float(d - med)} for a, d in zip(agree, dm_logs)]


def local_maxima(rho: np.ndarray) -> np.ndarray:
    """Flat indices of the grid points at least as high as their 26 neighbours (periodic), highest first."""
    is_max = np.ones(rho.shape, dtype=bool)
    for du in (-1, 0, 1):
        for dv in (-1, 0, 1):
            for dw in (-1, 0, 1):
                if du or dv or dw:
                    is_max &= rho >= np.roll(rho, (du, dv, dw), axis=(0, 1, 2))
    idx = np.flatnonzero(is_max)
    return idx[np.argsort(-rho.reshape(-1)[idx])]


def peak_cc(rho: np.ndarray, hkl: np.ndarray, e_obs: np.ndarray, n_atoms: int) -> float:
    """CC of |E_calc| of the ``n_atoms`` highest map peaks (equal point atoms, P1) with |E_obs|."""
    idx = local_maxima(rho)[:max(n_atoms, 1)]
    frac = np.stack(np.unravel_index(idx, rho.shape), axis=1) / np.array(rho.shape, dtype=np.float64)
    e_calc = np.abs(np.exp(2j * np.pi * (hkl.astype(np.float64) @ frac.T)).sum(axis=1)) / np.sqrt(len(idx))
    return float(np.corrcoef(e_calc, e_obs)[0, 1])


def skewness(rho: np.ndarray) -> float:
    """Third moment of the map about its mean over σ³ (dimensionless)."""
    x = rho - rho.mean()
    sd = x.std()
    return float((x ** 3).mean() / sd ** 3) if sd > 0 else 0.0


def map_features(cell: gemmi.UnitCell, hkl: np.ndarray, f_obs: np.ndarray, e_obs: np.ndarray,
                 phases: np.ndarray, n_atoms: int, rate: float = 3.0) -> dict[str, float]:
    """``peak_cc`` and ``skewness`` of the |F_obs|·exp(iφ) synthesis of ``phases`` (degrees)."""
    fg = fourier_grid(cell, hkl, rate=rate)
    rho = fg.to_map(f_obs * np.exp(1j * np.deg2rad(phases)))
    return {"peak_cc": peak_cc(rho, hkl, e_obs, n_atoms), "skewness": skewness(rho)}


@dataclass(frozen=True)
class SolutionScore:
    """Logistic model over some features: ``intercept`` + Σ ``weights`` · (x − ``mean``) / ``scale``."""

    intercept: float
    weights: Mapping[str, float]
    mean: Mapping[str, float]
    scale: Mapping[str, float]
    threshold: float = 0.5
    note: str = ""

    def logit(self, features: Mapping[str, float]) -> float:
        z = self.intercept
        for k, w in self.weights.items():
            z += w * (float(features[k]) - self.mean[k]) / self.scale[k]
        return float(z)

    def probability(self, features: Mapping[str, float]) -> float:
        """P(invariant phase error < 60°) of a candidate with these features."""
        return float(1.0 / (1.0 + np.exp(-self.logit(features))))

    def to_json(self) -> dict:
        return {"intercept": self.intercept, "weights": dict(self.weights), "mean": dict(self.mean),
                "scale": dict(self.scale), "threshold": self.threshold, "note": self.note}


    @classmethod
    def from_json(cls, d: Mapping) -> "SolutionScore":
        return cls(float(d["intercept"]), d["weights"], d["mean"], d["scale"], float(d.get("threshold", 0.5)),
                   d.get("note", ""))


@dataclass(frozen=True)
class ScoreModels:
    """The lone-candidate model and the model for a candidate among ``MIN_SET`` or more."""

    single: SolutionScore
    among: SolutionScore

    def probability(self, features: Mapping[str, float], n_candidates: int) -> float:
        model = self.among if n_candidates >= MIN_SET else self.single
        return model.probability(features)


@lru_cache(maxsize=4)
def load_score(path: str | None = None) -> ScoreModels:
    """The shipped coefficients (or those in ``path``)."""
    d = json.loads(Path(path or COEFFICIENTS).read_text())
    return ScoreModels(SolutionScore.from_json(d["single"]), SolutionScore.from_json(d["among"]))


def fit_logistic(x: np.ndarray, y: np.ndarray, names: tuple[str, ...], l2: float = 1e-2,
                 note: str = "") -> SolutionScore:
    """Fit the logistic model by Newton's method (ridge ``l2`` on standardised weights); ``y`` in {0, 1}."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    mu, sd = x.mean(axis=0), x.std(axis=0) + 1e-9
    z = np.column_stack([np.ones(len(x)), (x - mu) / sd])
    beta = np.zeros(z.shape[1])
    reg = np.full(z.shape[1], l2)
    reg[0] = 0.0
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-z @ beta))
        grad = z.T @ (p - y) + reg * beta
        hess = (z.T * (p * (1 - p))) @ z + np.diag(reg) + 1e-9 * np.eye(len(beta))
        step = np.linalg.solve(hess, grad)
        beta -= step
        if np.abs(step).max() < 1e-8:
            break
    return SolutionScore(float(beta[0]), dict(zip(names, map(float, beta[1:]))), dict(zip(names, map(float, mu))),
                         dict(zip(names, map(float, sd))), 0.5, note)


def roc_auc(score: np.ndarray, label: np.ndarray) -> float:
    """Area under the ROC curve (ties count half); NaN when a class is missing."""
    score = np.asarray(score, dtype=np.float64)
    label = np.asarray(label, dtype=bool)
    pos, neg = score[label], score[~label]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (len(pos) * len(neg)))
