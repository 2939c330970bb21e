"""Recycling at inference (RecCrysFormer paper 000, section 4; issue #5): K cycles of
predict -> refine -> template (appendix E) -> predict with the recycled model.

Cycle 0 is the ordinary prediction of the first model.  Cycle k (1..K) refines the previous prediction
against the observed amplitudes (:func:`crysplugins.crystal.refine.density_modify`), turns the result into
a template — the appendix E post-processed refined map when the refinement succeeded ("refined"), else
the previous prediction itself, the same rule as the paper's evaluation (section 5) — and predicts again
with the *recycled* model, whose input is (Patterson, template).  The last prediction is refined too, so
every cycle has a score; the table reports, per cycle, the model used, the refinement score (CC of
|F_mod| with |F_obs|), whether it counts as refined, and the change from the previous prediction
(Pearson of consecutive predictions).

The recycled model is named in the first model's card (``card["recycled_model"]``), or is a card whose
``recycling.base_model`` names the first model.  numpy + gemmi + onnxruntime only (no torch).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import gemmi
import numpy as np

from crysplugins.errors import CrysError


def recycled_model_name(card: Any, name: str | None = None) -> str | None:
    """The recycled companion of a model: ``card["recycled_model"]``, else a model card whose
    ``recycling.base_model`` is ``name``; None when there is none."""
    get = card.get if hasattr(card, "get") else dict(card).get
    explicit = get("recycled_model")
    if explicit:
        return str(explicit)
    if name is None:
        return None
    from crysplugins.runtime.models import list_models

    for other in list_models():
        rec = other.get("recycling") or {}
        if isinstance(rec, dict) and rec.get("base_model") == name and other.name != name:
            return other.name
    return None


def refined_map_on_grid(hkl: np.ndarray, amplitudes: np.ndarray, phases_deg: np.ndarray,
                        shape: tuple[int, int, int], cell: gemmi.UnitCell) -> np.ndarray:
    """The |F|·exp(iφ) synthesis (e/Å³ on the amplitudes' scale) on a whole-cell grid of ``shape``;
    reflections beyond the grid's Nyquist limit are left out."""
    from crysplugins.crystal.fourier import FourierGrid

    hkl = np.asarray(hkl, dtype=np.int64)
    n = np.array(shape)
    keep = np.all(2 * np.abs(hkl) < n, axis=1)
    fg = FourierGrid(hkl[keep], tuple(int(x) for x in shape), float(cell.volume))
    return fg.to_map(np.asarray(amplitudes)[keep] * np.exp(1j * np.radians(np.asarray(phases_deg)[keep])))


def template_from_refinement(result: Any, prediction: np.ndarray, cell: gemmi.UnitCell,
                             use_unrefined: bool = False) -> tuple[np.ndarray, bool]:
    """(template in [-1, 1] on the prediction's grid, whether it is the refined map).

    The appendix E template of the refined map when ``result.refined`` (or ``use_unrefined``), else the
    prediction itself (section 5's rule for examples that could not be refined)."""
    from crysplugins.crystal.templates import postprocess_template

    if not (result.refined or use_unrefined):
        return np.asarray(prediction, dtype=np.float32), False
    rho = refined_map_on_grid(result.hkl, result.amplitudes, result.phases, prediction.shape, cell)
    return postprocess_template(rho, cell), True


@dataclass
class CycleOutcome:
    """Result of :func:`run_cycles`: the last prediction and its refinement, every prediction, the table."""

    prediction: np.ndarray
    refinement: Any
    predictions: list[np.ndarray] = field(default_factory=list)
    rows: list[list[Any]] = field(default_factory=list)

    columns = ["cycle", "model", "template", "dm_score", "refined", "pearson_with_previous"]


def run_cycles(first_prediction: np.ndarray, predict_with_template: Callable[[np.ndarray], np.ndarray],
               refine: Callable[[np.ndarray], Any], cycles: int, cell: gemmi.UnitCell,
               progress: Callable[[float, str], None] | None = None,
               use_unrefined: bool = False) -> CycleOutcome:
    """Run ``cycles`` recycling cycles from ``first_prediction`` (normalised map on the model grid).

    ``predict_with_template(template) -> prediction`` runs the recycled model; ``refine(prediction) ->``
    a :class:`crysplugins.crystal.refine.RefineResult`.  See the module docstring.
    """
    from crysplugins.crystal.metrics import pearson

    if cycles < 0:
        raise CrysError("The number of recycling cycles must be 0 or more.")
    pred = np.asarray(first_prediction, dtype=np.float32)
    out = CycleOutcome(prediction=pred, refinement=None, predictions=[pred])
    template_kind = "-"
    previous = None
    for k in range(cycles + 1):
        if progress is not None:
            progress(k / (cycles + 1), f"recycling cycle {k}/{cycles}: refining")
        res = refine(pred)
        change = pearson(previous, pred) if previous is not None else None  # None: valid JSON, no previous map
        out.rows.append([k, "first" if k == 0 else "recycled", template_kind, float(res.score), bool(res.refined),
                         change])
        out.refinement = res
        if k == cycles:
            break
        template, is_refined = template_from_refinement(res, pred, cell, use_unrefined)
        template_kind = "refined (appendix E)" if is_refined else "previous prediction"
        if progress is not None:
            progress((k + 0.5) / (cycles + 1), f"recycling cycle {k + 1}/{cycles}: predicting")
        previous = pred
        pred = np.asarray(predict_with_template(template), dtype=np.float32).reshape(pred.shape)
        out.predictions.append(pred)
    out.prediction = pred
    return out


def predict_cycles(card: Any, first_output: np.ndarray, patterson_norm: np.ndarray, extra_feeds: dict[str, np.ndarray],
                   observed: tuple[gemmi.UnitCell, np.ndarray, np.ndarray], sequence: Any, cycles: int,
                   dm_cycles: int = 50, progress: Callable[[float, str], None] | None = None,
                   final_dm_cycles: int = 0) -> tuple[np.ndarray, Any]:
    """The ``patterson-density`` plugin's recycling: ``cycles`` cycles after the first model's output.

    ``first_output`` and ``patterson_norm`` are normalised maps (N1, N2, N3) on the model grid;
    ``extra_feeds`` the other model inputs (the sequence); ``observed`` (cell, hkl, |F|) the amplitudes the
    refiner works against (to the model's resolution).  ``final_dm_cycles`` > 0 refines the last prediction
    once more, for that many cycles, and that map is the one the hand model reads and the outcome keeps as
    ``refined_map``; 0 keeps the last recycling refinement (``dm_cycles``).  The hand model's decision is
    applied to the prediction and to ``refined_map`` alike.  Returns (last normalised prediction, CycleOutcome).
    """
    from crysplugins.crystal.refine import density_modify
    from crysplugins.interface import CrystalMap
    from crysplugins.runtime.models import load_model

    name = recycled_model_name(card, getattr(card, "name", None))
    if name is None:
        raise CrysError(f"The model {getattr(card, 'name', '?')} has no recycled model (its card names none in "
                        "'recycled_model'); use cycles = 0.")
    session, card2 = load_model(name)
    inputs = {i.name: i for i in session.get_inputs()}
    ch = inputs["patterson"].shape[1] if "patterson" in inputs else None
    if ch is None or (isinstance(ch, int) and ch != 2):
        raise CrysError(f"The recycled model {name} does not take a (Patterson, template) input.")
    cell = observed[0]
    pn = np.asarray(patterson_norm, dtype=np.float32)

    def refine(pred: np.ndarray, n_cycles: int = dm_cycles) -> Any:
        cmap = CrystalMap.from_array(np.asarray(pred, dtype=np.float32), cell, "P 1")
        return density_modify(cmap, observed, sequence=sequence, cycles=n_cycles)

    def predict_with_template(template: np.ndarray) -> np.ndarray:
        feeds = {"patterson": np.stack([pn, np.asarray(template, dtype=np.float32)])[None], **extra_feeds}
        try:
            out = session.run(None, {k: feeds[k] for k in inputs})[0]
        except Exception as exc:
            raise CrysError(f"The recycled model {name} could not run ({str(exc).splitlines()[0][:160]}).") from None
        return out.reshape(pn.shape)

    outcome = run_cycles(first_output, predict_with_template, refine, cycles, cell, progress=progress)
    outcome.model = name  # type: ignore[attr-defined]
    # the recycled model follows the (random) hand of its template: its card's hand model puts the last
    # prediction on the L hand (crysplugins.runtime.hand; BENCHMARKS.md, issue #5)
    from crysplugins.crystal.maps import invert_grid
    from crysplugins.runtime.hand import choose_hand

    res = outcome.refinement  # the last prediction's own refinement: what an 'input: refined' hand model reads
    if final_dm_cycles > 0:
        if progress is not None:
            progress(0.97, f"final density modification ({final_dm_cycles} cycles)")
        res = refine(outcome.prediction, int(final_dm_cycles))
    outcome.final_refinement = res  # type: ignore[attr-defined]
    refined = refined_map_on_grid(res.hkl, res.amplitudes, res.phases, outcome.prediction.shape, cell)
    chosen, inverted, logits = choose_hand(outcome.prediction[None], card2, cells=[cell], refined=refined[None])
    outcome.prediction = chosen[0]
    outcome.refined_map = invert_grid(refined) if inverted[0] else refined  # type: ignore[attr-defined]
    outcome.hand_model = card2.get("hand_model")  # type: ignore[attr-defined]
    outcome.hand_inverted = bool(inverted[0])  # type: ignore[attr-defined]
    outcome.hand_logit = float(logits[0])  # type: ignore[attr-defined]
    return outcome.prediction, outcome
