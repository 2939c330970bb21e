"""The RecCrysFormer pipeline (paper 000): Patterson map + sequence → predict → recycle → density-modify
→ hand → place.  numpy + gemmi + onnxruntime; no torch.

1. **grid**: the model card gives the grid the model was trained on: spacing d_min / sampling rate (Å),
   the grid-size multiple, the largest grid, the resolution d_min (Å) and the normalisation of the
   training data (appendix B: maps scaled to [-1, 1]);
2. **Patterson**: P(u) = (1/V) Σ |F|² cos(2π h·u) on that grid (eq. 4; reflections beyond the model's d_min
   left out, F(000) omitted), or a Patterson map given as such;
3. **predict**: normalise per the card and run the first model (:class:`~crysplugins.runtime.runner.OnnxRunner`);
4. **recycle** (``cycles`` > 0, needs the amplitudes; :mod:`crysplugins.runtime.recycle`): refine, make a
   template, predict again with the recycled model; then a final refinement of the last prediction
   (``final_dm_cycles``; 0 keeps the last recycling refinement).  A model whose card names no recycled
   model has its own prediction refined by ``final_dm_cycles`` cycles instead.  The refiner is a
   :class:`~crysplugins.interface.Refiner` from the host's registry;
5. **hand**: a Patterson map is centrosymmetric, so the network may predict either hand; the hand model
   of the card of the model that made the last prediction (:mod:`crysplugins.runtime.hand`) puts it on the
   L-amino-acid hand, once, and the same decision is applied to the refined map;
6. **place**: the training data put the fragment's centre of mass at the cell centre (appendix B), and a
   prediction's small origin error survives density modification, so the maps are moved to put their
   strong-density centroid there (:func:`crysplugins.crystal.maps.centre_density`).

:class:`PipelineResult` keeps every intermediate; ``on_cycle`` sees each recycling cycle as it happens.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import gemmi
import numpy as np

from crysplugins.crystal.fourier import FourierGrid
from crysplugins.crystal.io import make_mtz
from crysplugins.crystal.maps import centre_density, grid_shape, invert_grid, patterson_map
from crysplugins.crystal.refine import check_fragment_cell
from crysplugins.errors import CrysError
from crysplugins.interface import CrystalMap, ObservedAmplitudes, RefineOutcome, Refiner, Reflections, Sequence
from crysplugins.runtime.hand import choose_hand, hand_confidence
from crysplugins.runtime.models import ModelCard, list_models
from crysplugins.runtime.recycle import (CycleOutcome, CycleRecord, recycled_model_name, refined_map_on_grid,
                                         run_cycles)
from crysplugins.runtime.runner import OnnxRunner

Progress = Callable[[float, str], None]
OUTPUTS = ("refined", "prediction")


@dataclass(frozen=True)
class Settings:
    """How the pipeline runs: recycling ``cycles``, refinement cycles per recycling step (``dm_cycles``) and
    for the last prediction (``final_dm_cycles``, 0: reuse the last step's), and which map is the output."""

    cycles: int = 0
    dm_cycles: int = 50
    final_dm_cycles: int = 0
    output: str = "prediction"
    note: str = ""  # why the card's default was not followed, for the user
    hand: bool = True  # False: leave the hand as predicted (a caller that reads the hand off a better map)


@dataclass
class HandCall:
    """The hand model's decision: its name (None when the card names none), inverted or not, the logit."""

    model: str | None = None
    inverted: bool = False
    logit: float = float("nan")


@dataclass
class PipelineResult:
    """Every intermediate of one run.  Normalised maps are in the model's units on the model grid;
    ``density`` and ``refined_density`` in e/Å³, placed (centred) and on the chosen hand."""

    cell: gemmi.UnitCell
    shape: tuple[int, int, int]
    settings: Settings
    patterson: np.ndarray                       # normalised network input
    first_prediction: np.ndarray                # the first model's output as predicted
    model: str                                  # the model that made the last prediction
    first_card: ModelCard | None = None         # the card of the first model
    observed: ObservedAmplitudes | None = None  # the amplitudes as given (all resolutions)
    observed_used: ObservedAmplitudes | None = None  # those to the model's d_min: Patterson and refinements
    recycling: CycleOutcome | None = None       # every recycled prediction and its refinement
    final_refinement: RefineOutcome | None = None
    refined: np.ndarray | None = None           # |F_obs| synthesis of the final refinement, chosen hand
    hand: HandCall = field(default_factory=HandCall)
    prediction: np.ndarray | None = None        # the last prediction, chosen hand
    density: np.ndarray | None = None           # the last prediction in e/Å³, placed
    shift: np.ndarray | None = None             # its centring shift (fractional)
    refined_density: np.ndarray | None = None   # the refined map, placed, on the prediction's mean
    refined_shift: np.ndarray | None = None
    messages: list[str] = field(default_factory=list)

    def meta(self) -> dict[str, Any]:
        """JSON-ready facts of the run: model, grid, hand call (when a hand model chose), centring shift."""
        card = self.first_card
        meta: dict[str, Any] = {"model": card.name if card else self.model, "grid": list(self.shape),
                                "model_sha256": card.get("sha256") if card else None}
        if self.hand.model:  # without a hand model the logit is NaN, which is not valid JSON
            meta.update({"hand_model": self.hand.model} if self.recycling else {})
            meta.update(hand_inverted=self.hand.inverted, hand_logit=self.hand.logit,
                        hand_confidence=hand_confidence(self.hand.logit))
        meta["centring_shift"] = [float(t) for t in self.shift]  # fractional, applied to the network's map
        if self.recycling is not None:
            meta["output"] = self.settings.output
        return meta

    def as_map(self, values: np.ndarray, name: str) -> CrystalMap:
        """A whole-cell P1 map (e/Å³) of ``values`` in this run's cell."""
        return CrystalMap.from_array(values.astype(np.float32), self.cell, gemmi.SpaceGroup("P 1"), name=name,
                                     units="e/Å³")

    @property
    def output(self) -> np.ndarray:
        """The map the settings ask for: the refined one after recycling when ``output`` is "refined"."""
        if self.settings.output == "refined" and self.refined_density is not None:
            return self.refined_density
        return self.density


class RecCrysFormerPipeline:
    """The pipeline of one model (its card names the recycled model and hand models) and a refiner."""

    def __init__(self, model: str, refiner: Refiner | None = None, threads: int | None = None) -> None:
        self.runner, self.card = OnnxRunner.from_model(model, threads=threads)
        self.refiner = refiner
        self.refiner_name = str(self.card.get("refiner", "density-modification"))  # in the host's registry
        self.threads = threads
        grid = self.card["grid"]
        # a card trained at one resolution gives numbers; one trained over a range gives [lo, hi] pairs
        self.d_min_range = _as_range(grid["d_min"])
        self.d_min = self.d_min_range[0]
        self.multiple, self.max_grid = int(grid["multiple"]), int(grid["max_grid"])
        self.n_residues = _as_range(self.card["n_residues"])
        norm = self.card["normalisation"]
        self.patterson_norm, self.density_norm = norm["patterson"], norm["density"]

    def settings(self, cycles: int | None = None, dm_cycles: int | None = None,
                 final_dm_cycles: int | None = None, output: str | None = None,
                 with_amplitudes: bool = True, hand: bool = True) -> Settings:
        """Settings with the card's defaults for what is not given (recycling needs the amplitudes)."""
        card, note = self.card, ""
        if cycles is None:
            cycles = int(card.get("default_cycles", 0) or 0) if with_amplitudes else 0
            if not with_amplitudes and card.get("default_cycles"):
                note = (f"The model's default of {card['default_cycles']} recycling cycle(s) needs the observed "
                        "amplitudes; from a Patterson map alone this is the first model's prediction.")
        final = int(card.get("final_dm_cycles", 0) or 0) if final_dm_cycles is None else int(final_dm_cycles)
        output = output or str(card.get("default_output", "prediction"))
        if cycles > 0 and output not in OUTPUTS:
            raise CrysError(f"The output must be 'refined' or 'prediction', not '{output}'.")
        return Settings(int(cycles), int(dm_cycles or 50), final, output, note, bool(hand))

    # ---------------------------------------------------------------------------------- inputs
    def check_sequence(self, sequence: Sequence) -> None:
        lo, hi = (int(n) for n in self.n_residues)
        if not lo <= len(sequence) <= hi:
            takes = f"exactly {lo}" if lo == hi else f"{lo} to {hi}"
            raise CrysError(f"The model {self.card.name} takes fragments of {takes} residues; "
                            f"the sequence has {len(sequence)}.")

    def spacing_for(self, d_min: float) -> float:
        """Grid spacing (Å) for data to ``d_min`` Å: the card's, or d_min / the mean training sampling rate
        when the model was trained over a range of resolutions (paper 000, appendix B)."""
        return grid_spacing(self.card["grid"], d_min)

    def normalise_patterson(self, patt: np.ndarray) -> np.ndarray:
        """The network's input: the card's constants, or each map divided by its origin peak."""
        norm = self.patterson_norm
        if norm.get("per_map") == "max":
            return np.clip(patt / max(float(patt.max()), 1e-12), -1, 1)
        return np.clip((patt - norm["offset"]) / norm["scale"], -1, 1)

    def check_cell(self, cell: gemmi.UnitCell) -> None:
        trained = (self.card.get("data") or {}).get("cell_angles")
        if trained:
            lo, hi = trained
            for ang in (cell.alpha, cell.beta, cell.gamma):
                if not (lo - 1.0 <= ang <= hi + 1.0):
                    raise CrysError(f"The cell angle {ang:.1f}° is outside the range the model was trained on "
                                    f"({lo:.0f}-{hi:.0f}°).")

    def observed_for_model(self, observed: ObservedAmplitudes, messages: list[str]) -> ObservedAmplitudes:
        """The observed amplitudes to the model's resolution (P1, a cell the model knows)."""
        sg = observed.spacegroup
        if sg is None or sg.number != 1:
            raise CrysError(f"The model works in space group P 1 only; the reflections are in "
                            f"{sg.hm if sg else 'an unknown space group'} (expand them to P 1 first).")
        self.check_cell(observed.cell)
        if not len(observed):
            raise CrysError("The reflections hold no usable amplitudes.")
        d = observed.d()
        lo, hi = self.d_min_range
        if d.min() > hi + 0.05:
            trained = f"to {hi:.2f} Å" if lo == hi else f"from {lo:.2f} to {hi:.2f} Å"
            raise CrysError(f"The model was trained on data {trained}; these reflections stop at {d.min():.2f} Å.")
        if d.min() < lo - 0.01:
            messages.append(f"Reflections beyond {lo:.2f} Å (the model's resolution) were left out.")
        d_data = max(float(d.min()), lo)
        d_net = self.d_min_fitting_grid(observed.cell, d_data)
        if d_net > d_data + 1e-6:
            messages.append(f"Reflections beyond {d_net:.2f} Å were left out: at {d_data:.2f} Å this cell needs "
                            f"more than the model's {self.max_grid} grid points per axis.")
        return observed.within(d_net)

    def d_min_fitting_grid(self, cell: gemmi.UnitCell, d_min: float) -> float:
        """The finest resolution (Å), from ``d_min`` down to the card's coarsest in 0.01 Å steps, whose grid
        fits the model's ``max_grid`` points per axis; ``d_min`` itself when none does (the Patterson step
        then refuses the cell).  Long fragments in large cells at 1.5 Å are run a little coarser this way
        rather than refused."""
        hi = self.d_min_range[1]
        for d in np.arange(d_min, hi + 1e-6, 0.01):
            if max(grid_shape(cell, self.spacing_for(float(d)), self.multiple)) <= self.max_grid:
                return float(d)
        return d_min

    def patterson_from_amplitudes(self, observed: ObservedAmplitudes) -> np.ndarray:
        """The Patterson map (e²/Å³) of ``observed`` on the model's grid for their cell."""
        cell = observed.cell
        shape = grid_shape(cell, self.spacing_for(float(observed.d().min())), self.multiple)
        if max(shape) > self.max_grid:
            raise CrysError(f"The cell {cell.a:.1f} x {cell.b:.1f} x {cell.c:.1f} Å needs a {shape[0]}x{shape[1]}x"
                            f"{shape[2]} grid; the model {self.card.name} takes at most {self.max_grid} points "
                            "per axis.")
        return patterson_map((observed.hkl, observed.amplitudes), cell, shape).array

    def patterson_from_map(self, pmap: CrystalMap) -> np.ndarray:
        """A given Patterson map, checked against the model's grid."""
        if pmap.spacegroup is not None and pmap.spacegroup.number != 1:
            raise CrysError("The Patterson map must cover the whole P 1 cell.")
        self.check_cell(pmap.cell)
        shape = pmap.shape
        lo, hi = self.d_min_range
        fine, coarse = (grid_shape(pmap.cell, self.spacing_for(d), self.multiple) for d in (lo, hi))
        if not all(c <= n <= f and n % self.multiple == 0 for n, f, c in zip(shape, fine, coarse)):
            want = f"{fine[0]}x{fine[1]}x{fine[2]}" + ("" if fine == coarse else
                                                      f" to {coarse[0]}x{coarse[1]}x{coarse[2]}")
            raise CrysError(f"The Patterson map has a {shape[0]}x{shape[1]}x{shape[2]} grid; the model needs "
                            f"{want} for this cell ({self.spacing_for(lo):.2f} Å spacing at {lo:.2f} Å).")
        if max(shape) > self.max_grid:
            raise CrysError(f"The map grid {shape} is larger than the model's {self.max_grid} points per axis.")
        return np.asarray(pmap.array, dtype=np.float64)

    # ------------------------------------------------------------------------------ the models
    def sequence_feed(self, runner: OnnxRunner, sequence: Sequence) -> dict[str, np.ndarray]:
        """The residue indices (card's ``residue_types``) for a model that takes the sequence."""
        if "sequence" not in runner.input_names:
            return {}
        types = self.card.get("residue_types", "ACDEFGHIKLMNPQRSTVWY")
        return {"sequence": np.array([[types.index(c) for c in sequence.residues]], dtype=np.int64)}

    def predict(self, patterson: np.ndarray, sequence: Sequence) -> np.ndarray:
        """The first model's prediction (normalised) from a normalised Patterson map."""
        feeds = {"patterson": patterson[None, None].astype(np.float32), **self.sequence_feed(self.runner, sequence)}
        return self.runner.run(feeds)[0, 0]

    def recycled(self) -> tuple[OnnxRunner, ModelCard]:
        """The recycled model (its card names the hand model of recycled predictions)."""
        name = recycled_model_name(self.card, self.card.name)
        if name is None:
            raise CrysError(f"The model {self.card.name} has no recycled model (its card names none in "
                            "'recycled_model'); use cycles = 0.")
        runner, card = OnnxRunner.from_model(name, threads=self.threads)
        channels = runner.input_shapes["patterson"][1] if "patterson" in runner.input_shapes else None
        if channels is None or (isinstance(channels, int) and channels != 2):
            raise CrysError(f"The recycled model {name} does not take a (Patterson, template) input.")
        return runner, card

    def predict_with_template(self, runner: OnnxRunner, patterson: np.ndarray, template: np.ndarray,
                              sequence: Sequence) -> np.ndarray:
        """The recycled model's prediction from the normalised Patterson map and a template in [-1, 1]."""
        x = np.stack([patterson, np.asarray(template, dtype=np.float32)])[None]
        return runner.run({"patterson": x, **self.sequence_feed(runner, sequence)}).reshape(patterson.shape)

    def refine(self, prediction: np.ndarray, observed: ObservedAmplitudes, sequence: Sequence,
               cycles: int) -> RefineOutcome:
        """The refiner's result for a normalised prediction against ``observed``."""
        if self.refiner is None:
            raise CrysError("Recycling needs a refiner; none was given to the pipeline.")
        cmap = CrystalMap.from_array(np.asarray(prediction, dtype=np.float32), observed.cell, "P 1")
        return self.refiner.refine(cmap, observed, sequence=sequence, cycles=int(cycles))

    # --------------------------------------------------------------------------------- the run
    def run(self, sequence: Sequence, observed: ObservedAmplitudes | None = None,
            patterson: CrystalMap | None = None, settings: Settings | None = None,
            on_cycle: Callable[[CycleRecord], None] | None = None,
            progress: Progress | None = None) -> PipelineResult:
        """Run the pipeline on observed amplitudes (P1) or a Patterson map; see the module docstring."""
        report = progress or (lambda f, m: None)
        settings = settings or self.settings(with_amplitudes=observed is not None)
        self.check_sequence(sequence)
        if (observed is None) == (patterson is None):
            raise CrysError("Give either reflections or a Patterson map, not both." if observed is not None
                            else "patterson-density needs reflections or a Patterson map.")
        messages: list[str] = []
        given = observed
        if observed is not None:
            observed = self.observed_for_model(observed, messages)
            patt, cell = self.patterson_from_amplitudes(observed), observed.cell
        else:
            patt, cell = self.patterson_from_map(patterson), patterson.cell
        check_fragment_cell(cell, sequence, None, "patterson-density")
        report(0.3, "Patterson map computed")
        pn = self.normalise_patterson(patt)
        first = self.predict(pn, sequence)
        report(0.75, "density predicted")
        result = PipelineResult(cell, tuple(first.shape), settings, pn, first, self.card.name, self.card, given,
                                observed, messages=messages)
        hand_card, refined = self.card, None
        if settings.cycles > 0:
            if observed is None:
                raise CrysError("Recycling (cycles > 0) refines against the observed amplitudes: give reflections.")
            hand_card, refined = self._recycle(result, observed, sequence, on_cycle,
                                               lambda f, m: report(0.8 + 0.19 * f, m))
        elif observed is not None and settings.final_dm_cycles > 0 and not self.card.get("recycled_model"):
            refined = self._refine_first(result, observed, sequence, report)
        self._choose_hand(result, hand_card, refined, sequence)
        if settings.note:
            messages.append(settings.note)
        self._place(result)
        return result

    def _recycle(self, result: PipelineResult, observed: ObservedAmplitudes, sequence: Sequence,
                 on_cycle: Callable[[CycleRecord], None] | None, progress: Progress) -> tuple[ModelCard, np.ndarray]:
        """Recycling and the final refinement; returns (the recycled card, the final refined map)."""
        runner, card = self.recycled()
        s = result.settings
        result.recycling = run_cycles(
            result.first_prediction, lambda t: self.predict_with_template(runner, result.patterson, t, sequence),
            lambda p: self.refine(p, observed, sequence, s.dm_cycles), s.cycles, result.cell,
            progress=progress, on_cycle=on_cycle)
        result.model = card.name
        res = result.recycling.refinement
        if s.final_dm_cycles > 0:
            progress(0.97, f"final density modification ({s.final_dm_cycles} cycles)")
            res = self.refine(result.recycling.prediction, observed, sequence, s.final_dm_cycles)
        result.final_refinement = res
        rows = result.recycling.rows
        result.messages.append(f"{s.cycles} recycling cycle(s) with {card.name}; refinement score "
                               + " -> ".join(f"{r[3]:.4f}" for r in rows) + ".")
        return card, refined_map_on_grid(res.hkl, res.amplitudes, res.phases, result.shape, result.cell)

    def _refine_first(self, result: PipelineResult, observed: ObservedAmplitudes, sequence: Sequence,
                      progress: Progress) -> np.ndarray:
        """A model without a recycled model: density modification of its own prediction (the card's
        ``final_dm_cycles``); returns the refined map on the model grid."""
        cycles = result.settings.final_dm_cycles
        progress(0.85, f"density modification ({cycles} cycles)")
        res = result.final_refinement = self.refine(result.first_prediction, observed, sequence, cycles)
        result.messages.append(f"The prediction was refined by {cycles} cycles of density modification "
                               f"(score {res.score:.4f}).")
        return refined_map_on_grid(res.hkl, res.amplitudes, res.phases, result.shape, result.cell)

    def _choose_hand(self, result: PipelineResult, card: ModelCard, refined: np.ndarray | None,
                     sequence: Sequence) -> None:
        """The hand model of ``card`` reads the last prediction (or its refined map) once (not at all when the
        settings say ``hand=False``)."""
        last = result.recycling.prediction if result.recycling is not None else result.first_prediction
        if not result.settings.hand:
            result.prediction, result.refined = np.asarray(last), refined
            result.messages.append("Hand left as predicted (no hand model asked for).")
            return
        chosen, inverted, logits = choose_hand(np.asarray(last)[None], card, threads=self.threads,
                                               cells=[result.cell],
                                               refined=None if refined is None else refined[None],
                                               sequences=[sequence.residues])
        result.prediction = chosen[0]
        if refined is not None:
            result.refined = invert_grid(refined) if inverted[0] else refined
        if not card.get("hand_model"):
            return
        hand = result.hand = HandCall(str(card.get("hand_model")), bool(inverted[0]), float(logits[0]))
        done = "inverted through the cell centre" if hand.inverted else "kept"
        if result.recycling is None:
            done += "" if hand.inverted else " as predicted"
            result.messages.append(f"Hand chosen by {hand.model}: {done} (classifier logit {hand.logit:+.2f}, "
                                   f"confidence {hand_confidence(hand.logit):.2f}; below 0.9 an uncertain call).")
        else:
            result.messages.append(f"Hand of the last prediction chosen by {hand.model}: {done} "
                                   f"(logit {hand.logit:+.2f}, confidence {hand_confidence(hand.logit):.2f}; "
                                   "below 0.9 an uncertain call).")

    def _place(self, result: PipelineResult) -> None:
        """The maps in e/Å³ with their strong-density centroid at the cell centre (training convention)."""
        norm = self.density_norm
        dens = result.prediction.astype(np.float64) * norm["scale"] + norm["offset"]
        result.density, result.shift = centre_density(dens, cell=result.cell)
        result.messages.append(f"The network's map was moved by {describe_shift(result.shift)} (fractional) to put its "
                               "density centroid at the cell centre, where the training data put the centre of mass.")
        if result.refined is not None:
            refined, result.refined_shift = centre_density(result.refined, cell=result.cell)
            result.refined_density = refined + float(result.density.mean())


def first_models() -> list[ModelCard]:
    """Cards of every RecCrysFormer first model (a recycled model, named in another card's
    ``recycled_model``, takes a template channel and is not a first model)."""
    cards = [c for c in list_models("reccrysformer") if c.get("predictor") == "patterson-density"]
    recycled = {c.get("recycled_model") for c in cards}
    return [c for c in cards if c.name not in recycled]


def model_for(n_residues: int, d_min: float | None, cell: gemmi.UnitCell | None = None) -> str:
    """The first model whose card covers a fragment of ``n_residues`` with data to ``d_min`` Å (None: any
    resolution) in ``cell`` (None: any cell), the narrowest range first: a model trained for one length and
    resolution is preferred to a general one where both cover the input, unless the cell needs more grid
    points than the specialist takes even at its coarsest resolution."""
    def covers(card: ModelCard) -> bool:
        lo, hi = _as_range(card["n_residues"])
        d_lo, d_hi = _as_range(card["grid"]["d_min"])
        return lo <= n_residues <= hi and (d_min is None or d_min <= d_hi + 0.05) and \
            (cell is None or _cell_fits(card, cell))

    def width(card: ModelCard) -> tuple[float, float]:
        lo, hi = _as_range(card["n_residues"])
        d_lo, d_hi = _as_range(card["grid"]["d_min"])
        return hi - lo, d_hi - d_lo

    covering = sorted((c for c in first_models() if covers(c)), key=lambda c: (width(c), c.name))
    if not covering:
        at = "" if d_min is None else f" with data to {d_min:.2f} Å"
        ranges = "; ".join(f"{c.name}: {_describe_range(c['n_residues'], '')} residues, "
                           f"{_describe_range(c['grid']['d_min'], ' Å')}" for c in first_models())
        raise CrysError(f"No installed patterson-density model covers a fragment of {n_residues} residues{at} "
                        f"({ranges or 'no models installed'}).")
    return covering[0].name


def grid_spacing(grid: dict[str, Any], d_min: float) -> float:
    """Grid spacing (Å) of a card's ``grid`` for data to ``d_min`` Å: the card's ``spacing`` (or d_min / rate)
    for a model trained at one resolution; d_min / the mean training sampling rate for one trained over a
    range (paper 000, appendix B)."""
    lo, hi = _as_range(grid["d_min"])
    rate = float(np.mean(_as_range(grid["sampling_rate"])))
    if lo == hi:
        return lo / rate if grid.get("spacing") is None else float(grid["spacing"])
    return max(d_min, lo) / rate


def _cell_fits(card: ModelCard, cell: gemmi.UnitCell) -> bool:
    """Whether ``cell`` fits the card's ``max_grid`` at the coarsest resolution the model reads (Å)."""
    grid = card["grid"]
    spacing = grid_spacing(grid, _as_range(grid["d_min"])[1])
    return max(grid_shape(cell, spacing, int(grid["multiple"]))) <= int(grid["max_grid"])


def _describe_range(value: Any, unit: str) -> str:
    lo, hi = _as_range(value)
    return f"{lo:g}{unit}" if lo == hi else f"{lo:g}-{hi:g}{unit}"


def _as_range(value: Any) -> tuple[float, float]:
    """A card value that is one number or a [lo, hi] pair, as (lo, hi)."""
    if isinstance(value, (list, tuple)):
        return float(value[0]), float(value[-1])
    return float(value), float(value)


def describe_shift(t: np.ndarray) -> str:
    """A fractional shift as '(+0.012, -0.003, +0.000)'."""
    return "(" + ", ".join(f"{v:+.3f}" for v in t) + ")"


def phased_reflections(observed: ObservedAmplitudes, density: np.ndarray, name: str = "phases") -> Reflections:
    """Observed amplitudes (and σ) with the phases (degrees) of ``density``'s Fourier transform, as MTZ."""
    fg = FourierGrid(observed.hkl, tuple(density.shape), float(observed.cell.volume))
    f_pred, _ = fg.from_map(density)
    cols = {"F": ("F", observed.amplitudes), "PHI": ("P", np.degrees(np.angle(f_pred)))}
    if observed.sigmas is not None:
        cols["SIGF"] = ("Q", observed.sigmas)
    mtz = make_mtz(observed.cell, gemmi.SpaceGroup("P 1"), observed.hkl, cols)
    return Reflections(mtz, {"F": "F", "PHI": "PHI"} | ({"SIGF": "SIGF"} if "SIGF" in cols else {}), name=name)
