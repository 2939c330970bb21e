"""Recycling at inference (RecCrysFormer paper 000, section 4): K cycles of
predict -> refine -> template (appendix E) -> predict with the recycled model.

Cycle 0 is the ordinary prediction of the first model.  Cycle k (1..K) refines the previous prediction
against the observed amplitudes with a refiner (the host's ``density-modification`` by default), turns
the result into a template — the appendix E post-processed refined map when the refinement succeeded
("refined"), else the previous prediction itself, the same rule as the paper's evaluation (section 5) — and predicts again
with the *recycled* model, whose input is (Patterson, template).  The last prediction is refined too, so
every cycle has a score; the table reports, per cycle, the model used, the refinement score (CC of
|F_mod| with |F_obs|), whether it counts as refined, and the change from the previous prediction
(Pearson of consecutive predictions).

The recycled model is named in the first model's card (``card["recycled_model"]``), or is a card whose
``recycling.base_model`` names the first model.  numpy + gemmi + onnxruntime only (no torch).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import gemmi
import numpy as np

from crysplugins.crystal.fourier import FourierGrid
from crysplugins.crystal.metrics import pearson
from crysplugins.crystal.templates import postprocess_template
from crysplugins.errors import CrysError
from crysplugins.interface import RefineOutcome, Table
from crysplugins.runtime.models import list_models


def recycled_model_name(card: Any, name: str | None = None) -> str | None:
    """The recycled companion of a model: ``card["recycled_model"]``, else a model card whose
    ``recycling.base_model`` is ``name``; None when there is none."""
    get = card.get if hasattr(card, "get") else dict(card).get
    explicit = get("recycled_model")
    if explicit:
        return str(explicit)
    if name is None:
        return None
    for other in list_models():
        rec = other.get("recycling") or {}
        if isinstance(rec, dict) and rec.get("base_model") == name and other.name != name:
            return other.name
    return None


def refined_map_on_grid(hkl: np.ndarray, amplitudes: np.ndarray, phases_deg: np.ndarray,
                        shape: tuple[int, int, int], cell: gemmi.UnitCell) -> np.ndarray:
    """The |F|·exp(iφ) synthesis (e/Å³ on the amplitudes' scale) on a whole-cell grid of ``shape``;
    reflections beyond the grid's Nyquist limit are left out."""
    hkl = np.asarray(hkl, dtype=np.int64)
    n = np.array(shape)
    keep = np.all(2 * np.abs(hkl) < n, axis=1)
    fg = FourierGrid(hkl[keep], tuple(int(x) for x in shape), float(cell.volume))
    return fg.to_map(np.asarray(amplitudes)[keep] * np.exp(1j * np.radians(np.asarray(phases_deg)[keep])))


def template_from_refinement(result: RefineOutcome, prediction: np.ndarray, cell: gemmi.UnitCell,
                             use_unrefined: bool = False) -> tuple[np.ndarray, bool]:
    """(template in [-1, 1] on the prediction's grid, whether it is the refined map).

    The appendix E template of the refined map when ``result.refined`` (or ``use_unrefined``), else the
    prediction itself (section 5's rule for examples that could not be refined)."""
    if not (result.refined or use_unrefined):
        return np.asarray(prediction, dtype=np.float32), False
    rho = refined_map_on_grid(result.hkl, result.amplitudes, result.phases, prediction.shape, cell)
    return postprocess_template(rho, cell), True


@dataclass
class CycleRecord:
    """One recycling cycle: the prediction (normalised map on the model grid), the model that made it
    ("first" or "recycled"), the template it was given, its refinement and the Pearson with the previous
    prediction (None in cycle 0)."""

    index: int
    model: str
    template: str
    prediction: np.ndarray
    refinement: RefineOutcome
    change: float | None

    def row(self) -> list[Any]:
        return [self.index, self.model, self.template, float(self.refinement.score),
                bool(self.refinement.refined), self.change]


@dataclass
class CycleOutcome:
    """Result of :func:`run_cycles`: one :class:`CycleRecord` per cycle, first to last."""

    records: list[CycleRecord] = field(default_factory=list)

    columns: ClassVar[list[str]] = ["cycle", "model", "template", "dm_score", "refined", "pearson_with_previous"]

    @property
    def prediction(self) -> np.ndarray:
        """The last prediction."""
        return self.records[-1].prediction

    @property
    def refinement(self) -> RefineOutcome:
        """The last prediction's refinement."""
        return self.records[-1].refinement

    @property
    def predictions(self) -> list[np.ndarray]:
        return [r.prediction for r in self.records]

    @property
    def rows(self) -> list[list[Any]]:
        return [r.row() for r in self.records]

    def table(self) -> Table:
        return Table(list(self.columns), self.rows, "recycling cycles (dm_score: CC of |F_mod| with |F_obs|; "
                     "refined when >= the refiner's threshold)")


def run_cycles(first_prediction: np.ndarray, predict_with_template: Callable[[np.ndarray], np.ndarray],
               refine: Callable[[np.ndarray], RefineOutcome], cycles: int, cell: gemmi.UnitCell,
               progress: Callable[[float, str], None] | None = None, use_unrefined: bool = False,
               on_cycle: Callable[[CycleRecord], None] | None = None) -> CycleOutcome:
    """Run ``cycles`` recycling cycles from ``first_prediction`` (normalised map on the model grid).

    ``predict_with_template(template) -> prediction`` runs the recycled model; ``refine(prediction)`` a
    refiner (:class:`crysplugins.interface.Refiner`).  ``on_cycle(record)`` is called once per cycle, after
    the cycle's refinement, so that callers can look at every step.  See the module docstring.
    """
    if cycles < 0:
        raise CrysError("The number of recycling cycles must be 0 or more.")
    pred = np.asarray(first_prediction, dtype=np.float32)
    out = CycleOutcome()
    template_kind = "-"
    previous = None
    for k in range(cycles + 1):
        if progress is not None:
            progress(k / (cycles + 1), f"recycling cycle {k}/{cycles}: refining")
        res = refine(pred)
        change = pearson(previous, pred) if previous is not None else None  # None: valid JSON, no previous map
        record = CycleRecord(k, "first" if k == 0 else "recycled", template_kind, pred, res, change)
        out.records.append(record)
        if on_cycle is not None:
            on_cycle(record)
        if k == cycles:
            break
        template, is_refined = template_from_refinement(res, pred, cell, use_unrefined)
        template_kind = "refined (appendix E)" if is_refined else "previous prediction"
        if progress is not None:
            progress((k + 0.5) / (cycles + 1), f"recycling cycle {k + 1}/{cycles}: predicting")
        previous = pred
        pred = np.asarray(predict_with_template(template), dtype=np.float32).reshape(pred.shape)
    return out
