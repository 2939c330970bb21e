"""Built-in plugin ``patterson-density``: RecCrysFormer (paper 000) Patterson map + sequence -> density.

Inputs: observed amplitudes (or intensities) in P1 *or* a Patterson map, and the fragment's sequence.
Steps (all numpy/gemmi + onnxruntime; no torch):

1. the model card (``crysplugins.runtime.models``) gives the grid the model was trained on: spacing
   d_min / sampling rate (Å), the grid-size multiple, the largest grid, the resolution d_min (Å) and the
   normalisation constants of the training data (appendix B: maps scaled to [-1, 1]);
2. Patterson map P(u) = (1/V) sum |F|^2 cos(2 pi h.u) on that grid (eq. 4; reflections beyond the model's
   d_min are left out, F(000) omitted) with :func:`crysplugins.crystal.maps.patterson_map`;
3. normalise per the card, run the ONNX model, scale the output back to e/Å^3;
3b. a Patterson map is centrosymmetric, so a hand-invariant model predicts either hand: the card's hand
   classifier (``hand_model``, :mod:`crysplugins.runtime.hand`) puts the map on the L-amino-acid hand;
3c. with amplitudes, recycling (``cycles``, the card's ``default_cycles``; :mod:`crysplugins.runtime.recycle`):
   density modification, the recycled model on the refined template, then a final density modification of
   the last prediction (``final_dm_cycles``, the card's, 200 for the shipped model), whose map the recycled
   model's hand model reads;
3d. centring: the training data put the fragment's centre of mass at the cell centre (appendix B), and a
   prediction's small origin error survives density modification, so every map is moved (by a fraction of
   a voxel if need be) to put its strong-density centroid there (:func:`crysplugins.crystal.maps.centre_density`);
4. outputs: ``density`` (CCP4 map, e/Å^3): after recycling, the final density-modified map when ``output``
   is ``refined`` (the card's ``default_output``; then the network's own map is ``density_prediction``), else
   the prediction; the same map on the other hand when a hand model chose (``density_other_hand``, for
   checking the call); and, for amplitude input, an MTZ with the observed amplitudes and the phases of
   ``density`` (degrees).

A Patterson map does not fix the origin, so ``origin_arbitrary`` is True; the maps are placed by the
training convention above.
"""
from __future__ import annotations

from typing import Any

import gemmi
import numpy as np

from crysplugins.crystal.fourier import usable_reflections
from crysplugins.errors import CrysError
from crysplugins.hookspecs import hookimpl
from crysplugins.interface import (CrystalMap, InputSpec, Kind, OutputSpec, Prediction, Reflections, Request,
                                   Scalar, Sequence)

DEFAULT_MODEL = "reccrysformer_dipeptide"


class PattersonDensityPredictor:
    """Electron density of a small P1 fragment from its Patterson map and sequence (RecCrysFormer)."""

    name = "patterson-density"
    version = "1.0.0"
    summary = ("Electron density of a short peptide fragment in P1 from its Patterson map and sequence "
               "(RecCrysFormer transformer, ONNX).")
    origin_arbitrary = True
    inputs = (
        InputSpec("reflections", Kind.REFLECTIONS, "observed amplitudes F (or intensities I) in P1",
                  columns=("F?", "SIGF?", "I?"), group="data"),
        InputSpec("patterson", Kind.MAP, "a Patterson map of the P1 cell (instead of reflections)", group="data"),
        InputSpec("sequence", Kind.SEQUENCE, "sequence of the fragment (one-letter string or FASTA file)",
                  required=True),
        InputSpec("model", Kind.TEXT, "model name (a card in the package's models or $CRYSPLUGINS_MODELS)",
                  default=DEFAULT_MODEL),
        InputSpec("cycles", Kind.INT, "recycling cycles: refine, make a template, predict again with the "
                  "recycled model (paper 000, section 4; needs reflections); when not given, the model card's "
                  "default_cycles with reflections, else 0", minimum=0, maximum=20),
        InputSpec("dm_cycles", Kind.INT, "density-modification cycles per recycling refinement", default=50,
                  minimum=1, maximum=10000),
        InputSpec("final_dm_cycles", Kind.INT, "density-modification cycles on the last recycled prediction, the "
                  "map the hand model reads and the 'refined' output; 0 reuses the last recycling refinement; "
                  "when not given, the model card's final_dm_cycles", minimum=0, maximum=10000),
        InputSpec("output", Kind.CHOICE, "what 'density' holds after recycling: the density-modified map of the "
                  "last prediction ('refined') or the network's prediction itself ('prediction'); when not "
                  "given, the model card's default_output", choices=("refined", "prediction")),
    )
    outputs = (
        OutputSpec("density", Kind.MAP, "predicted electron density", unit="e/Å³"),
        OutputSpec("density_other_hand", Kind.MAP, "the predicted density inverted through the cell centre: the "
                   "hand the hand model rejected, to check its call (only when a hand model chose)", unit="e/Å³"),
        OutputSpec("density_prediction", Kind.MAP, "the recycled network's own prediction (hand and centring "
                   "applied), when 'density' holds the refined map", unit="e/Å³"),
        OutputSpec("phases", Kind.REFLECTIONS, "observed amplitudes with the phases of the predicted density"),
        OutputSpec("recycling", Kind.TABLE, "per recycling cycle: model, template, refinement score (CC), refined"),
    )

    # ------------------------------------------------------------------------------------ model
    def _model(self, name: str | None):
        from crysplugins.runtime.models import load_model

        return load_model(name or DEFAULT_MODEL)

    def model_card(self) -> dict | None:
        from crysplugins.runtime.models import find_card

        try:
            return find_card(DEFAULT_MODEL).data
        except CrysError:
            return None

    def example_inputs(self) -> dict[str, Any]:
        """The shipped held-out test dipeptide: amplitudes MTZ + sequence (crysplugins/data/examples)."""
        from crysplugins.examples import fragment_example

        example = fragment_example()
        return {"reflections": example["reflections"], "sequence": example["sequence"]}

    # ---------------------------------------------------------------------------------- predict
    def predict(self, request: Request) -> Prediction:
        from crysplugins.crystal.maps import centre_density, grid_shape, patterson_map

        session, card = self._model(request.get("model"))
        request.report(0.05, "model loaded")
        seq: Sequence = request.require("sequence")
        residue_types = card.get("residue_types", "ACDEFGHIKLMNPQRSTVWY")
        n_res = int(card["n_residues"])
        if len(seq) != n_res:
            raise CrysError(f"The model {card.name} takes fragments of exactly {n_res} residues; "
                            f"the sequence has {len(seq)}.")
        grid = card["grid"]
        spacing, d_model = float(grid["spacing"]), float(grid["d_min"])
        multiple, max_grid = int(grid["multiple"]), int(grid["max_grid"])
        refl: Reflections | None = request.get("reflections")
        pmap: CrystalMap | None = request.get("patterson")
        if refl is not None and pmap is not None:
            raise CrysError("Give either reflections or a Patterson map, not both.")
        messages: list[str] = []
        if refl is not None:
            cell = refl.cell
            sg = refl.spacegroup
            if sg is None or sg.number != 1:
                raise CrysError(f"The model works in space group P 1 only; the reflections are in "
                                f"{sg.hm if sg else 'an unknown space group'} (expand them to P 1 first).")
            self._check_cell(cell, card)
            hkl = refl.miller_array()
            amp = refl.amplitudes()
            ok = usable_reflections(hkl, amp)
            from crysplugins.crystal.fourier import cell_d

            d = cell_d(cell, hkl[ok]) if ok.any() else np.array([])
            if not len(d):
                raise CrysError("The reflections hold no usable amplitudes.")
            if d.min() > d_model + 0.05:
                raise CrysError(f"The model was trained on data to {d_model:.2f} Å; these reflections stop at "
                                f"{d.min():.2f} Å.")
            keep = np.zeros(len(hkl), bool)
            keep[np.flatnonzero(ok)[d >= d_model * (1 - 1e-6)]] = True
            if d.min() < d_model - 0.01:
                messages.append(f"Reflections beyond {d_model:.2f} Å (the model's resolution) were left out.")
            shape = grid_shape(cell, spacing, multiple)
            if max(shape) > max_grid:
                raise CrysError(f"The cell {cell.a:.1f} x {cell.b:.1f} x {cell.c:.1f} Å needs a {shape[0]}x{shape[1]}x"
                                f"{shape[2]} grid; the model {card.name} takes at most {max_grid} points per axis.")
            patt = patterson_map((hkl[keep], amp[keep]), cell, shape).array
        elif pmap is not None:
            cell = pmap.cell
            if pmap.spacegroup is not None and pmap.spacegroup.number != 1:
                raise CrysError("The Patterson map must cover the whole P 1 cell.")
            self._check_cell(cell, card)
            shape = pmap.shape
            want = grid_shape(cell, spacing, multiple)
            if tuple(shape) != tuple(want):
                raise CrysError(f"The Patterson map has a {shape[0]}x{shape[1]}x{shape[2]} grid; the model needs "
                                f"{want[0]}x{want[1]}x{want[2]} for this cell ({spacing:.2f} Å spacing).")
            if max(shape) > max_grid:
                raise CrysError(f"The map grid {shape} is larger than the model's {max_grid} points per axis.")
            patt = np.asarray(pmap.array, dtype=np.float64)
        else:
            raise CrysError("patterson-density needs reflections or a Patterson map.")
        request.report(0.3, "Patterson map computed")
        norm = card["normalisation"]
        pn = np.clip((patt - norm["patterson"]["offset"]) / norm["patterson"]["scale"], -1, 1)
        feeds = {"patterson": pn[None, None].astype(np.float32)}
        input_names = [i.name for i in session.get_inputs()]
        if "sequence" in input_names:
            feeds["sequence"] = np.array([[residue_types.index(c) for c in seq.residues]], dtype=np.int64)
        try:
            out = session.run(None, {k: feeds[k] for k in input_names})[0]
        except Exception as exc:
            raise CrysError(f"The model could not run on a {shape} grid ({str(exc).splitlines()[0][:160]}).") from None
        request.report(0.75, "density predicted")
        from crysplugins.runtime.hand import choose_hand

        chosen, inverted, logits = choose_hand(out[:, 0], card, cells=[cell])
        out = chosen[:, None]
        if card.get("hand_model"):
            messages.append(f"Hand chosen by {card['hand_model']}: "
                            f"{'inverted through the cell centre' if inverted[0] else 'kept as predicted'} "
                            f"(classifier logit {logits[0]:+.2f}; |logit| < 1 is an uncertain call).")
        request.report(0.8, "hand chosen")
        given = request.get("cycles")
        if given is not None:
            cycles = int(given)
        else:  # the card says how the model is meant to be run (recycling needs the observed amplitudes)
            cycles = int(card.get("default_cycles", 0) or 0) if refl is not None else 0
            if refl is None and card.get("default_cycles"):
                messages.append(f"The model's default of {card['default_cycles']} recycling cycle(s) needs the "
                                "observed amplitudes; from a Patterson map alone this is the first model's prediction.")
        table = None
        if cycles > 0:  # recycling at inference (issue #5): see crysplugins.runtime.recycle
            from crysplugins.interface import Table
            from crysplugins.runtime.recycle import CycleOutcome, predict_cycles

            if refl is None:
                raise CrysError("Recycling (cycles > 0) refines against the observed amplitudes: give reflections.")
            final_dm = request.get("final_dm_cycles")
            final_dm = int(card.get("final_dm_cycles", 0) or 0) if final_dm is None else int(final_dm)
            output = request.get("output") or str(card.get("default_output", "prediction"))
            if output not in ("refined", "prediction"):
                raise CrysError(f"The output must be 'refined' or 'prediction', not '{output}'.")
            last, outcome = predict_cycles(
                card, out[0, 0], pn, {k: v for k, v in feeds.items() if k != "patterson"},
                (cell, hkl[keep], amp[keep]), seq, cycles, int(request.get("dm_cycles", 50) or 50),
                progress=lambda f, m: request.report(0.8 + 0.19 * f, m), final_dm_cycles=final_dm)
            out = last[None, None]
            table = Table(CycleOutcome.columns, outcome.rows, "recycling cycles (dm_score: CC of |F_mod| with "
                          "|F_obs|; refined when >= the refiner's threshold)")
            messages.append(f"{cycles} recycling cycle(s) with {outcome.model}; refinement score "
                            + " -> ".join(f"{r[3]:.4f}" for r in outcome.rows) + ".")
            if outcome.hand_model:
                messages.append(f"Hand of the last prediction chosen by {outcome.hand_model}: "
                                f"{'inverted through the cell centre' if outcome.hand_inverted else 'kept'} "
                                f"(logit {outcome.hand_logit:+.2f}; |logit| < 1 is an uncertain call).")
        dens = out[0, 0].astype(np.float64) * norm["density"]["scale"] + norm["density"]["offset"]
        dens, shift = centre_density(dens)

        def moved(t: np.ndarray) -> str:
            return "(" + ", ".join(f"{v:+.3f}" for v in t) + ")"

        messages.append(f"The network's map was moved by {moved(shift)} (fractional) to put its density centroid "
                        "at the cell centre, where the training data put the centre of mass.")
        network = None
        if table is not None and output == "refined":  # the density-modified map, on the prediction's mean
            network = dens
            refined, refined_shift = centre_density(outcome.refined_map)
            dens = refined + float(dens.mean())
            messages.append(f"'density' is the density-modified map of the last prediction "
                            f"({final_dm or int(request.get('dm_cycles', 50) or 50)} cycles, |F_obs| and refined "
                            f"phases), centred the same way (moved by {moved(refined_shift)}); the network's own "
                            "map is 'density_prediction'.")
        p1 = gemmi.SpaceGroup("P 1")
        density = CrystalMap.from_array(dens.astype(np.float32), cell, p1, name="density", units="e/Å^3")
        meta = {"model": card.name, "grid": list(shape), "model_sha256": card.get("sha256")}
        if card.get("hand_model"):  # without a classifier the logit is NaN, which is not valid JSON
            meta.update(hand_inverted=bool(inverted[0]), hand_logit=float(logits[0]))
        if table is not None:  # the first model's hand call does not describe the recycled map
            for k in ("hand_inverted", "hand_logit"):
                meta.pop(k, None)
            if outcome.hand_model:
                meta.update(hand_model=outcome.hand_model, hand_inverted=outcome.hand_inverted,
                            hand_logit=outcome.hand_logit)
        meta["centring_shift"] = [float(t) for t in shift]  # fractional, applied to the network's map
        if table is not None:
            meta["output"] = output
        pred = Prediction(maps={"density": density}, messages=messages, meta=meta)
        if network is not None:
            pred.maps["density_prediction"] = CrystalMap.from_array(network.astype(np.float32), cell, p1,
                                                                    name="density_prediction", units="e/Å^3")
        hand_model = meta.get("hand_model") or card.get("hand_model")
        if hand_model:  # a hand call can be wrong (BENCHMARKS.md): give the rejected hand too
            from crysplugins.crystal.maps import invert_grid

            pred.maps["density_other_hand"] = CrystalMap.from_array(
                invert_grid(dens).astype(np.float32), cell, p1, name="density_other_hand", units="e/Å^3")
            messages.append("The rejected hand is in 'density_other_hand'; check which map holds L-amino acids"
                            + self._hand_accuracy_note(str(hand_model)) + ".")
        if refl is not None:
            pred.reflections["phases"] = self._phases(refl, dens, cell, shape)
        pred.scalars["density_rms"] = Scalar(float(dens.std()), "e/Å³", "rms of the predicted density")
        if table is not None:
            pred.tables["recycling"] = table
        request.report(1.0, "done")
        return pred

    @staticmethod
    def _hand_accuracy_note(hand_model: str) -> str:
        """' (the hand model was right in N % of its held-out test maps)' from its card, or ''.

        The card's ``metrics.pipeline_test`` (measured on the maps the plugin's default pipeline gives it)
        comes first; else ``metrics.test`` (the maps it was fitted on)."""
        from crysplugins.runtime.models import find_card

        try:
            metrics = find_card(hand_model).get("metrics") or {}
            acc = float((metrics.get("pipeline_test") or metrics.get("test") or {})["hand_accuracy"])
        except (CrysError, KeyError, TypeError, ValueError):
            return ""
        return f" (the hand model was right in {100 * acc:.0f} % of its held-out test maps)"

    @staticmethod
    def _check_cell(cell: gemmi.UnitCell, card) -> None:
        trained = (card.get("data") or {}).get("cell_angles")
        if trained:
            lo, hi = trained
            for ang in (cell.alpha, cell.beta, cell.gamma):
                if not (lo - 1.0 <= ang <= hi + 1.0):
                    raise CrysError(f"The cell angle {ang:.1f}° is outside the range the model was trained on "
                                    f"({lo:.0f}-{hi:.0f}°).")

    @staticmethod
    def _phases(refl: Reflections, dens: np.ndarray, cell: gemmi.UnitCell, shape) -> Reflections:
        """Observed amplitudes with the phases (degrees) of the predicted density's Fourier transform."""
        from crysplugins.crystal.fourier import FourierGrid
        from crysplugins.crystal.io import make_mtz

        hkl = refl.miller_array()
        amp = refl.amplitudes()
        ok = usable_reflections(hkl, amp)
        fg = FourierGrid(hkl[ok], tuple(shape), float(cell.volume))
        f_pred, _ = fg.from_map(dens)
        cols = {"F": ("F", amp[ok]), "PHI": ("P", np.degrees(np.angle(f_pred)))}
        if refl.has("SIGF"):
            cols["SIGF"] = ("Q", refl.values("SIGF")[ok])
        mtz = make_mtz(cell, gemmi.SpaceGroup("P 1"), hkl[ok], cols)
        return Reflections(mtz, {"F": "F", "PHI": "PHI"} | ({"SIGF": "SIGF"} if "SIGF" in cols else {}),
                           name="phases")


@hookimpl
def register_predictors(register):
    register(PattersonDensityPredictor())
