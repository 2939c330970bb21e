"""``crysplugins train hand-chirality``: the hand model that puts a predicted fragment on the L hand.

Why: a Patterson map is the same for a fragment and its inverse through the cell centre (paper 000,
section 3), so a RecCrysFormer trained on it can only learn the hand from the chemistry (L-amino acids).
Our small CPU models do not; a recycled model (section 4) follows the hand of its template, which density
modification leaves random (BENCHMARKS.md, "Table 1 form from the shipped model").

What it fits: for every example of the train split, the predictor run's prediction (with its template
when the run is a recycled, two-channel model), the rotation-invariant pseudoscalar features of that
prediction or (``--hand-input refined``, the default) of its density-modified map, which the recycling
pipeline computes for its last prediction anyway (:func:`crysplugins.crystal.chirality.pseudoscalar_features`),
and the label "the prediction correlates
better with the true density than its inverse does" (Pearson, eq. 7).  A logistic regression without
intercept: since every feature is a pseudoscalar, the score is exactly antisymmetric, score(inverted map)
= −score(map), and the fit is the same whichever hand the examples are shown in.  Newton's method with an
L2 penalty; the penalty comes from 5-fold cross-validation on the train split, folds grouped by PDB entry
(criterion: mean Pearson with the chosen hand).  The test split (held-out families) is only evaluated.

The features are computed on the predictor's normalised maps (the dataset / model-card scale), or on the
refined map in rms units (its amplitudes' absolute scale is unknown at inference); the fitted weights are
valid on that scale only.

``--pipeline-mtz DIR`` fits instead on the maps the ``patterson-density`` plugin itself reads the hand off
(its final density-modified map, with the card's defaults), for MTZ pairs such as the validation rows of
``benchmarks/make_validation_mtz.py``; every N-th test MTZ of ``--data`` is the test set
(:func:`train_from_pipeline`).

``--true-maps`` fits instead on the true densities of the train families (the hand of a *solved* map, as
fragment-phasing's charge-flipping winner or a density-modified network map is once right): each map to its
d_min and again with simulated phase errors of mean 20° and 35° (:func:`degraded_map`), shown in both hands by
the antisymmetry; the head (linear, penalty by grouped cross-validation) is measured on the test families'
maps (:func:`fit_true_maps`; the shipped ``fragment_hand``:
``train hand-chirality --true-maps --data data_build/frag2-15 --every 5 --test-every 6 --out runs/fragment_hand``).
``--true-maps --head gated`` fits a head that weighs each voxel's pseudoscalars instead
(:mod:`crysplugins.training.hand_gated`; the shipped ``fragment_hand_gated``).

``--average A,B`` fits nothing: it writes one linear card whose logit is the equal-weight mean of the installed
linear cards A and B (:func:`average_linear_cards`; exact when their feature sets nest, e.g. ``pseudoscalar-v1``
inside ``pseudoscalar-v2``).

Output: ``RUN_DIR/hand_chirality.json``, a model card (task ``hand-chirality``; weights, feature scale,
blurs, training summary, test metrics); ``crysplugins export RUN_DIR`` copies it to ``models/``.
``RUN_DIR/features-<split>-<key>.npz`` caches the features (the key hashes the dataset, the predictor's
identity, the template set, the rows and the feature set), so a refit is fast and never stale.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Callable

import gemmi
import numpy as np

from crysplugins.crystal.chirality import (FEATURE_PREFIXES, FEATURE_SET, SIGMAS, pseudoscalar_features,
                                          reciprocal_vectors)
from crysplugins.crystal.fourier import FourierGrid
from crysplugins.crystal.io import atomic_path
from crysplugins.crystal.maps import invert_grid
from crysplugins.crystal.metrics import pearson
from crysplugins.crystal.refine import density_modify
from crysplugins.datasets.phasing import kappa_for_mean_error
from crysplugins.datasets.store import open_dataset
from crysplugins.datasets.template_store import TemplateStore, choose_templates, with_template
from crysplugins.datasets.templates import select_rows, true_reflections
from crysplugins.errors import CrysError
from crysplugins.evaluation.compare import (PredictorLabel, examples_from_dataset, examples_from_mtz_dir, run_one,
                                            true_data)
from crysplugins.host import default_host
from crysplugins.interface import CrystalMap, ObservedAmplitudes
from crysplugins.runtime.hand import chirality_head, rms_normalised
from crysplugins.runtime.models import CARD_FORMAT, find_card, list_models
from crysplugins.runtime.recycle import refined_map_on_grid
from crysplugins.training.runner import load_runner

TASK = "hand-chirality"
LAMBDAS = (1e-4, 1e-3, 1e-2, 1e-1)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("hand-chirality (fits the hand model of a predictor run; numpy only)")
    g.add_argument("--predictor-run", metavar="RUN_DIR",
                   help="the RecCrysFormer run whose predictions get a hand (with --templates for a recycled run)")
    g.add_argument("--fraction", type=float, default=0.1, help="fraction of each train shard (default 0.1)")
    g.add_argument("--test-fraction", type=float, default=0.25, help="fraction of each test shard (default 0.25)")
    g.add_argument("--hand-input", choices=("prediction", "refined"), default="refined",
                   help="read the hand off the prediction or off its density-modified map (default refined: "
                        "the recycling pipeline refines its last prediction anyway)")
    g.add_argument("--dm-cycles", type=int, default=50, help="density-modification cycles for --hand-input refined")
    g.add_argument("--pipeline-mtz", metavar="DIR",
                   help="instead of --predictor-run: fit on the maps the patterson-density plugin's pipeline reads "
                        "the hand off (its final density-modified map) for the MTZ pairs in DIR, e.g. written by "
                        "benchmarks/make_validation_mtz.py from training rows the recycled model never saw")
    g.add_argument("--pipeline", default="patterson-density:output=refined",
                   help="the plugin and its options for --pipeline-mtz (NAME:key=value,...; output=refined needed)")
    g.add_argument("--workers", type=int, default=1, help="with --pipeline-mtz: processes running the plugin")
    g.add_argument("--true-maps", action="store_true",
                   help="instead of --predictor-run: fit on the true densities of --data's train families, each also "
                        "with simulated phase errors (the hand of a solved map; fit_true_maps), and measure on its "
                        "test families")
    g.add_argument("--average", metavar="CARD,CARD",
                   help="instead of fitting: one linear card whose logit is the equal-weight mean of these installed "
                        "linear hand-chirality cards' logits (same blurs and input, nested feature sets), written "
                        "to --out for `crysplugins export`")
    g.add_argument("--every", type=int, default=5, help="with --true-maps: every N-th train example (default 5)")
    g.add_argument("--head", choices=("linear", "gated"), default="linear",
                   help="with --true-maps: a linear score of whole-map pseudoscalar sums (default) or a gated head "
                        "weighing each voxel's pseudoscalars by its surroundings (crysplugins.training.hand_gated, "
                        "which runs it: every train map of 2-5 residues, every --every-th longer one)")
    g.add_argument("--phase-errors", default=",".join(f"{e:g}" for e in PHASE_ERRORS), dest="phase_errors",
                   help="with --true-maps: the mean phase errors (degrees, comma-separated) each train map is also "
                        "shown with (default %(default)s; 0 is the true map)")
    g.add_argument("--test-every", type=int, default=8, dest="test_every",
                   help="evaluate on every N-th test example of --data (default 8; --true-maps: 6 is the card's)")


def refined_map(prediction: np.ndarray, density_norm: np.ndarray, norm: dict, cell_params: Any, d_min: float,
                sequence: str, cycles: int) -> np.ndarray:
    """The density-modified map of a prediction (the pipeline's last refinement, paper 000 section 4):
    ``cycles`` cycles of :func:`crysplugins.crystal.refine.density_modify` against the example's amplitudes
    (|F| of the un-normalised true density to ``d_min``, like the test MTZs), |F|·exp(iφ) on the grid."""
    cell = gemmi.UnitCell(*[float(v) for v in cell_params])
    hkl, f = true_reflections(density_norm, norm, cell, float(d_min))
    keep = np.abs(f) > 0
    pred = np.asarray(prediction, dtype=np.float32)
    observed = ObservedAmplitudes(cell, gemmi.SpaceGroup("P 1"), hkl[keep], np.abs(f)[keep])
    res = density_modify(CrystalMap.from_array(pred, cell, gemmi.SpaceGroup("P 1")), observed,
                         sequence=sequence, cycles=cycles)
    return refined_map_on_grid(res.hkl, res.amplitudes, res.phases, pred.shape, cell)


def predictions_with_labels(data: str | Path, runner: Any, templates: str | None, split: str, fraction: float,
                            seed: int = 0, progress: Callable[[str], None] | None = None, on: str = "prediction",
                            dm_cycles: int = 50) -> dict[str, np.ndarray]:
    """Features, labels and Pearsons of ``runner``'s predictions on ``fraction`` of each ``split`` shard.

    Rows are those of :func:`crysplugins.datasets.templates.select_rows` (the rows a template set of the same
    fraction and seed holds).  ``on``: the map the features are read off, "prediction" or "refined" (its
    density-modified map, :func:`refined_map`, in rms units).  Returns X (n, F), y (n,) 1.0 when the
    prediction's own hand is the better one, pearson / pearson_inverted (n,) of the prediction against the
    true density, ids (n,)."""
    if on not in ("prediction", "refined"):
        raise CrysError(f"The hand model reads 'prediction' or 'refined' maps, not '{on}'.")
    ds = open_dataset(data)
    store = None
    if runner.in_channels > 1:
        if not templates:
            raise CrysError("The predictor run takes a template channel: give --templates NAME (its template set).")
        store = TemplateStore(ds.root, templates)
    norm = ds.meta["normalisation"]["density"]
    X, y, pa, pb, ids = [], [], [], [], []
    t0 = time.monotonic()
    for shard in ds.shards(split):
        arrays = shard.load()
        rows = select_rows(shard.n, fraction, seed, shard.path.stem)
        for start in range(0, len(rows), 16):
            idx = rows[start:start + 16]
            x = arrays["patterson"][idx].astype(np.float32)[:, None]
            if store is not None:
                tpl = store.lookup(shard.path.name, idx)
                if tpl is None:
                    raise CrysError(f"The template set '{templates}' lacks rows of {shard.path.stem} "
                                    f"(build it with the same --fraction and seed).")
                t, _ = choose_templates(tpl["prediction"], tpl["refined"], tpl["is_refined"], 1.0, None)
                x = with_template(x, t)
            pred = runner(x, arrays["sequence_index"][idx].astype(np.int64))
            for j, row in enumerate(idx):
                truth = arrays["density"][row].astype(np.float64)
                a, b = pearson(pred[j], truth), pearson(invert_grid(pred[j]), truth)
                if on == "refined":
                    seq = ds.sequences(arrays["sequence_index"][row:row + 1])[0]
                    m = rms_normalised(refined_map(pred[j], truth, norm, arrays["cell"][row], arrays["d_min"][row],
                                                   seq, dm_cycles))
                else:
                    m = pred[j]
                X.append(pseudoscalar_features(m, arrays["cell"][row]))
                y.append(float(a >= b))
                pa.append(a)
                pb.append(b)
                ids.append(str(arrays["ids"][row]))
        if progress:
            progress(f"{split} {shard.path.stem}: {len(X)} examples, {time.monotonic() - t0:.0f} s")
    if not X:
        raise CrysError(f"No {split} examples were selected.")
    return {"X": np.array(X), "y": np.array(y), "pearson": np.array(pa), "pearson_inverted": np.array(pb),
            "ids": np.array(ids)}


def pipeline_features_with_labels(examples: list, pipeline: str, progress: Callable[[str], None] | None = None,
                                  workers: int = 1) -> dict[str, np.ndarray]:
    """Features, labels and Pearsons of the map the ``patterson-density`` pipeline reads the hand off.

    ``examples``: :class:`crysplugins.evaluation.compare.Example` (amplitudes + true-phase MTZ, sequence).
    The plugin runs as the CLI runs it (``pipeline``, e.g. ``patterson-density:output=refined``: recycling,
    then the final density modification of the last prediction, whose map is ``density``).  The plugin has
    already applied its current hand model and centring; undoing the recorded inversion gives the map as it
    came out of the refinement (the features are translation-invariant, so the centring does not matter).
    X: pseudoscalar features of that map in rms units; y: 1.0 when its own hand correlates better with the
    true-phase map (eq. 7) than its inverse; pearson / pearson_inverted; ids.  ``workers`` > 1 runs
    contiguous chunks of the examples in that many processes (same result, in the same order)."""
    if workers > 1 and len(examples) > 1:
        chunks = [list(c) for c in np.array_split(np.arange(len(examples)), workers) if len(c)]
        with ProcessPoolExecutor(len(chunks)) as pool:
            parts = list(pool.map(pipeline_features_with_labels, [[examples[i] for i in c] for c in chunks],
                                  [pipeline] * len(chunks)))
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    label = PredictorLabel.parse(pipeline)
    if label.options.get("output", "refined") != "refined":
        raise CrysError("The hand model is fitted on the pipeline's refined map: use output=refined.")
    label.options["output"] = "refined"
    host = default_host()
    X, y, pa, pb, ids = [], [], [], [], []
    t0 = time.monotonic()
    for i, example in enumerate(examples):
        prediction, _ = run_one(host, label, example)
        m = np.asarray(prediction.maps["density"].array, dtype=np.float64)
        if prediction.meta.get("output") != "refined":
            raise CrysError(f"{label.name} did not return its refined map for {example.id} (cycles = 0?).")
        if prediction.meta.get("hand_inverted"):
            m = invert_grid(m)
        cell, hkl, f, phi = true_data(example)
        true = FourierGrid(hkl, m.shape, float(cell.volume)).to_map(f * np.exp(1j * np.radians(phi)))
        a, b = pearson(true, m), pearson(true, invert_grid(m))
        X.append(pseudoscalar_features(rms_normalised(m), cell))
        y.append(float(a >= b))
        pa.append(a)
        pb.append(b)
        ids.append(example.id)
        if progress and (i + 1) % 200 == 0:
            progress(f"{i + 1}/{len(examples)} maps, {time.monotonic() - t0:.0f} s")
    if not X:
        raise CrysError("No examples were given.")
    return {"X": np.array(X), "y": np.array(y), "pearson": np.array(pa), "pearson_inverted": np.array(pb),
            "ids": np.array(ids)}


def fit_logistic(X: np.ndarray, y: np.ndarray, lam: float, iterations: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """Logistic regression without intercept (antisymmetric for pseudoscalar features).

    Returns (weights, scale): score = (X / scale) @ weights, > 0 for "keep the hand".  Newton's method on
    the L2-penalised mean log-loss (penalty ``lam``·|w|²/2), which is convex: the step is halved while it
    does not lower the loss.  Raises CrysError when it has not converged after ``iterations`` steps."""
    X = np.asarray(X, dtype=np.float64)
    t = np.asarray(y, dtype=np.float64)
    scale = np.abs(X).mean(axis=0) + 1e-12
    Z = X / scale
    w = np.zeros(Z.shape[1])
    eye = np.eye(len(w))

    def loss(v: np.ndarray) -> float:
        m = Z @ v
        return float(np.mean(np.logaddexp(0, m) - t * m) + 0.5 * lam * v @ v)

    for _ in range(iterations):
        p = 1 / (1 + np.exp(-np.clip(Z @ w, -30, 30)))
        grad = Z.T @ (p - t) / len(t) + lam * w
        hess = (Z * (p * (1 - p))[:, None]).T @ Z / len(t) + lam * eye
        step = np.linalg.solve(hess, grad)
        before, size = loss(w), 1.0
        while size > 1e-6 and loss(w - size * step) > before + 1e-15:
            size /= 2
        w = w - size * step
        if np.abs(size * step).max() < 1e-9:
            return w, scale
    raise CrysError(f"The hand-model fit did not converge in {iterations} Newton steps (penalty {lam:g}).")


def evaluate(score: np.ndarray, d: dict[str, np.ndarray]) -> dict[str, float]:
    """Hand accuracy and mean Pearsons (as predicted, with the chosen hand, with the better hand)."""
    keep = np.asarray(score) > 0
    chosen = np.where(keep, d["pearson"], d["pearson_inverted"])
    return {"n": int(len(keep)), "hand_accuracy": float((keep == (d["y"] > 0.5)).mean()),
            "pearson_as_predicted": float(d["pearson"].mean()), "pearson_chosen_hand": float(chosen.mean()),
            "pearson_better_hand": float(np.maximum(d["pearson"], d["pearson_inverted"]).mean()),
            "inverted_fraction": float((~keep).mean())}


def choose_lambda(d: dict[str, np.ndarray], lambdas=LAMBDAS, folds: int = 5, seed: int = 0
                  ) -> tuple[float, list[dict[str, float]]]:
    """The L2 penalty with the best cross-validated mean Pearson (chosen hand) on the train examples.

    Folds are drawn by PDB entry (the id's prefix), so overlapping fragments of one chain stay together."""
    entries = np.array([str(i).split("_")[0] for i in d["ids"]]) if "ids" in d else np.arange(len(d["y"])).astype(str)
    unique = np.unique(entries)
    if len(unique) < 2:
        raise CrysError("The hand model needs training examples from at least 2 structures to cross-validate.")
    folds = min(folds, len(unique))
    fold_of = dict(zip(np.random.default_rng(seed).permutation(unique), np.arange(len(unique)) % folds))
    fold = np.array([fold_of[e] for e in entries])
    table = []
    for lam in lambdas:
        chosen = []
        for k in range(folds):
            w, sc = fit_logistic(d["X"][fold != k], d["y"][fold != k], lam)
            part = {key: v[fold == k] for key, v in d.items()}
            chosen.append(evaluate((part["X"] / sc) @ w, part)["pearson_chosen_hand"])
        table.append({"lambda": lam, "cv_pearson_chosen_hand": float(np.mean(chosen))})
    best = max(table, key=lambda r: r["cv_pearson_chosen_hand"])
    return float(best["lambda"]), table


def _cached(path: Path, make: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    d = make()
    tmp = path.with_suffix(".part.npz")
    np.savez(tmp, **d)
    tmp.replace(path)
    return d


def _cache_key(parts: list) -> str:
    """A short hash of everything a feature cache depends on (JSON-able ``parts``)."""
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


def train_hand_chirality(data: str | Path, predictor_run: str | Path, out: str | Path, templates: str | None = None,
                         fraction: float = 0.1, test_fraction: float = 0.25, seed: int = 0, threads: int = 1,
                         progress: Callable[[str], None] | None = None, on: str = "prediction",
                         dm_cycles: int = 50) -> dict[str, Any]:
    """Fit and evaluate the hand model of ``predictor_run``; writes ``out/hand_chirality.json`` (returned)."""
    if not (0 < fraction <= 1 and 0 < test_fraction <= 1):
        raise CrysError("--fraction and --test-fraction must be in (0, 1].")
    ds = open_dataset(data)
    out = Path(out)
    if (out / "checkpoint.pt").exists():
        raise CrysError(f"{out} holds a training run (checkpoint.pt); give the hand model a folder of its own.")
    runner = load_runner(predictor_run, threads=threads)
    out.mkdir(parents=True, exist_ok=True)

    def key(split: str, frac: float) -> str:
        return _cache_key([str(ds.root.resolve()), runner.identity, templates, seed, split, frac, FEATURE_SET,
                           list(SIGMAS), on, dm_cycles if on == "refined" else None])

    train = _cached(out / f"features-train-{key('train', fraction)}.npz",
                    lambda: predictions_with_labels(ds.root, runner, templates, "train", fraction, seed, progress,
                                                    on, dm_cycles))
    test = _cached(out / f"features-test-{key('test', test_fraction)}.npz",
                   lambda: predictions_with_labels(ds.root, runner, templates, "test", test_fraction, seed, progress,
                                                   on, dm_cycles))
    training = {"dataset": str(ds.root), "predictor_run": str(predictor_run), "predictor": runner.identity,
                "templates": templates, "fraction": fraction, "seed": seed,
                "refinement": ({"cycles": dm_cycles, "amplitudes": "|F| of the true density to d_min (noise-free)",
                                "map_scale": "rms"} if on == "refined" else None)}
    return fit_and_write_card(train, test, out, on, training, {"test_fraction": test_fraction}, seed)


def fit_and_write_card(train: dict[str, np.ndarray], test: dict[str, np.ndarray], out: Path, on: str,
                       training: dict[str, Any], test_info: dict[str, Any], seed: int = 0) -> dict[str, Any]:
    """Choose the penalty by cross-validation on ``train``, fit, evaluate on ``test``; write
    ``out/hand_chirality.json`` (the card ``crysplugins export`` copies) and return it."""
    lam, cv = choose_lambda(train, seed=seed)
    w, sc = fit_logistic(train["X"], train["y"], lam)
    card = {
        "format": CARD_FORMAT, "task": TASK, "name": out.name,
        "description": "Hand (L vs D) of a predicted fragment density from rotation-invariant pseudoscalar "
                       "features; score > 0 keeps the map, < 0 inverts it through the cell centre.",
        "input": on, "feature_set": FEATURE_SET, "sigmas": list(SIGMAS), "weights": w.tolist(), "scale": sc.tolist(),
        "training": {**training, "n_train": int(len(train["y"])), "train_true_hand_fraction": float(train["y"].mean()),
                     "lambda": lam, "cv": cv},
        "metrics": {"train": evaluate((train["X"] / sc) @ w, train),
                    "test": evaluate((test["X"] / sc) @ w, test), **test_info},
    }
    return write_card(card, out)


def train_from_pipeline(mtz_dir: str | Path, data: str | Path, out: str | Path, pipeline: str, test_every: int = 8,
                        seed: int = 0, progress: Callable[[str], None] | None = None, workers: int = 1
                        ) -> dict[str, Any]:
    """Fit the hand model on the maps the plugin pipeline reads the hand off (:func:`pipeline_features_with_labels`):
    training maps from the MTZ pairs in ``mtz_dir``, test maps from every ``test_every``-th test MTZ of the
    dataset ``data`` (held-out families; only evaluated).  Features are cached in ``out`` by a key of the
    examples, the pipeline and the shipped models' checksums."""
    if test_every < 1:
        raise CrysError("--test-every must be 1 or more.")
    out = Path(out)
    train_examples = examples_from_mtz_dir(mtz_dir)
    if not train_examples:
        raise CrysError(f"{mtz_dir} holds no <id>_amplitudes.mtz + <id>_phases.mtz pairs.")
    test_examples = examples_from_dataset(data)[::test_every]
    out.mkdir(parents=True, exist_ok=True)
    # the maps depend on every model the pipeline runs, not on the hand model (its call is undone)
    models = sorted((c.name, c.get("sha256")) for c in list_models() if c.get("task") != TASK)

    def key(examples: list) -> str:
        return _cache_key([[e.id for e in examples], pipeline, models, FEATURE_SET, list(SIGMAS)])

    train = _cached(out / f"features-pipeline-train-{key(train_examples)}.npz",
                    lambda: pipeline_features_with_labels(train_examples, pipeline, progress, workers))
    test = _cached(out / f"features-pipeline-test-{key(test_examples)}.npz",
                   lambda: pipeline_features_with_labels(test_examples, pipeline, progress, workers))
    training = {"pipeline": pipeline, "mtz_dir": str(mtz_dir), "seed": seed,
                "maps": "the pipeline's final density-modified map of the last recycled prediction, rms units"}
    return fit_and_write_card(train, test, out, "refined", training,
                              {"test_examples": f"every {test_every}th test example of {data}"}, seed)


def check_true_maps_args(args: argparse.Namespace) -> None:
    """CrysError (one sentence) when a ``--true-maps`` fit lacks its dataset or has a step below 1."""
    if not args.data:
        raise CrysError("train hand-chirality --true-maps needs --data DIR (a dataset with true densities).")
    if args.every < 1 or args.test_every < 1:
        raise CrysError("--every and --test-every must be 1 or more.")
    parse_phase_errors(args.phase_errors)


def parse_phase_errors(text: str) -> tuple[float, ...]:
    """The ``--phase-errors`` list (degrees), checked: CrysError (one sentence) unless each is in [0, 90)."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if not values or not all(0 <= v < 90 for v in values):
        raise CrysError(f"--phase-errors takes comma-separated mean phase errors from 0 to below 90 degrees, "
                        f"not '{text}'.")
    return values


def run_cli(args: argparse.Namespace) -> int:
    """``crysplugins train hand-chirality ...`` (called by :mod:`crysplugins.training.cli`)."""
    say = None if args.quiet else (lambda m: print(m, flush=True))
    if args.average:
        if args.true_maps or args.pipeline_mtz or args.predictor_run:
            raise CrysError("train hand-chirality --average fits nothing; give it without --true-maps, "
                            "--pipeline-mtz or --predictor-run.")
        card = write_average_card([n.strip() for n in args.average.split(",") if n.strip()], args.out)
        print(json.dumps({"card": str(Path(args.out) / "hand_chirality.json"), "feature_set": card["feature_set"],
                          "ensemble_of": card["training"]["ensemble_of"]}, indent=1))
        return 0
    if args.true_maps:
        check_true_maps_args(args)
        card = fit_true_maps(args.data, args.out, every=args.every, test_every=args.test_every,
                             phase_errors=parse_phase_errors(args.phase_errors), seed=args.seed or 0, progress=say)
        print(json.dumps({"card": str(Path(args.out) / "hand_chirality.json"), "head": card["head"],
                          "cv": card["training"]["cv"], "test": card["metrics"]["test"]}, indent=1))
        return 0
    if args.pipeline_mtz:
        if not args.data:
            raise CrysError("train hand-chirality --pipeline-mtz needs --data DIR (its test MTZs are the test set).")
        card = train_from_pipeline(args.pipeline_mtz, args.data, args.out, args.pipeline, args.test_every,
                                   seed=args.seed or 0, progress=say, workers=args.workers)
        print(json.dumps({"card": str(Path(args.out) / "hand_chirality.json"), "lambda": card["training"]["lambda"],
                          "train": card["metrics"]["train"], "test": card["metrics"]["test"]}, indent=1))
        return 0
    if not args.predictor_run:
        raise CrysError("train hand-chirality needs --predictor-run RUN_DIR (the model whose predictions get a hand).")
    if not args.data:
        raise CrysError("train hand-chirality needs --data DIR (a Patterson dataset).")
    card = train_hand_chirality(args.data, args.predictor_run, args.out, templates=args.templates,
                                fraction=args.fraction, test_fraction=args.test_fraction, seed=args.seed or 0,
                                threads=args.threads or 1, progress=say, on=args.hand_input, dm_cycles=args.dm_cycles)
    print(json.dumps({"card": str(Path(args.out) / "hand_chirality.json"), "lambda": card["training"]["lambda"],
                      "train": card["metrics"]["train"], "test": card["metrics"]["test"]}, indent=1))
    return 0


# ------------------------------------------------------------------ true maps: the hand of a solved map
#: mean |phase error| (degrees) of the degraded copies each true training map is also shown as
PHASE_ERRORS = (0.0, 20.0, 35.0)


def von_mises_kappa(mean_error_deg: float) -> float:
    """Concentration κ of a von Mises phase error with mean |δ| = ``mean_error_deg`` (0 < it < 90), from
    :func:`crysplugins.datasets.phasing.kappa_for_mean_error`'s table."""
    if not 0 < float(mean_error_deg) < 90:
        raise CrysError("A simulated phase error must be between 0 and 90 degrees.")
    return float(kappa_for_mean_error(float(mean_error_deg)))


def degraded_map(density: np.ndarray, cell: Any, d_min: float, mean_error_deg: float,
                 rng: np.random.Generator) -> np.ndarray:
    """A solved map as a pipeline returns it: the true density to ``d_min`` (Å), without F(000), its phases
    shifted by von Mises errors of mean |δ| ``mean_error_deg`` (0: none), in rms units.

    The errors are drawn per coefficient of the ``rfftn`` half grid; on its l = 0 plane (and the Nyquist plane)
    a reflection and its Friedel mate both get one, and the inverse transform keeps their Hermitian part, so
    there the amplitude is damped as well (a few per cent of the reflections; the shipped card was fitted so)."""
    rho = np.asarray(density, dtype=np.float64)
    spectrum = np.fft.rfftn(rho)
    _, s2 = reciprocal_vectors(cell, rho.shape)
    spectrum[s2 > 1.0 / float(d_min) ** 2] = 0.0
    spectrum[0, 0, 0] = 0.0
    if mean_error_deg > 0:
        spectrum = spectrum * np.exp(1j * rng.vonmises(0.0, von_mises_kappa(mean_error_deg), spectrum.shape))
    return rms_normalised(np.fft.irfftn(spectrum, rho.shape, axes=(0, 1, 2)))


def degraded_true_maps(data: str | Path, split: str, every: int, phase_errors, seed: int,
                       per_map: Callable[[np.ndarray, Any], Any], lengths: tuple[int, int] = (2, 15),
                       progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """``per_map(map, cell)`` of every ``every``-th example's true density (the L hand) of ``split`` whose length
    is within ``lengths`` (residues), as :func:`degraded_map` makes it for each mean phase error in
    ``phase_errors`` (degrees); ``progress`` hears the count after each shard.

    Returns values (n lists of E), n_residues (n,), d_min (n,), ids (n,), phase_errors (E,); CrysError when no
    example is selected."""
    ds = open_dataset(data)
    rng = np.random.default_rng(seed)
    values, n_residues, d_mins, ids = [], [], [], []
    t0 = time.monotonic()
    for shard in ds.shards(split):
        arrays = shard.load()
        n_res = (arrays["sequence_index"] >= 0).sum(axis=1)
        for row in range(0, shard.n, every):
            if not lengths[0] <= n_res[row] <= lengths[1]:
                continue
            cell, d_min = arrays["cell"][row], float(arrays["d_min"][row])
            values.append([per_map(degraded_map(arrays["density"][row], cell, d_min, e, rng), cell)
                           for e in phase_errors])
            n_residues.append(int(n_res[row]))
            d_mins.append(d_min)
            ids.append(str(arrays["ids"][row]))
        if progress:
            progress(f"{split} {shard.path.stem}: {len(values)} maps, {time.monotonic() - t0:.0f} s")
    if not values:
        raise CrysError(f"No {split} examples were selected.")
    return {"values": values, "n_residues": np.array(n_residues), "d_min": np.array(d_mins), "ids": np.array(ids),
            "phase_errors": np.array(phase_errors, dtype=float)}


def true_map_features(data: str | Path, split: str, every: int, phase_errors=PHASE_ERRORS, seed: int = 0,
                      feature_set: str = "pseudoscalar-v2", progress: Callable[[str], None] | None = None
                      ) -> dict[str, np.ndarray]:
    """Features of every ``every``-th example's true density (the L hand) of ``split``, as
    :func:`degraded_map` makes it for each mean phase error in ``phase_errors``.

    Returns X (n, E, F), n_residues (n,), d_min (n,), ids (n,), phase_errors (E,)."""
    d = degraded_true_maps(data, split, every, phase_errors, seed,
                           lambda m, cell: pseudoscalar_features(m, cell, SIGMAS, feature_set), progress=progress)
    return {"X": np.array(d.pop("values")), **d}


def fit_odd_mlp(Z: np.ndarray, hidden: int = 16, lam: float = 1e-2, iterations: int = 800, seed: int = 0
                ) -> tuple[np.ndarray, np.ndarray]:
    """An odd one-hidden-layer score s(z) = tanh(z · W) · v (no biases: s(−z) = −s(z)) for scaled features
    ``Z`` (n, F) of L-hand maps, by Adam on the mean log-loss softplus(−s) + ``lam``·(|W|² + |v|²)/2.

    Since s is odd, the loss of a map shown inverted (label D, −z) is the same term: fitting the L maps
    alone is fitting both hands.  Returns (W (F, H), v (H,))."""
    rng = np.random.default_rng(seed)
    n, f = Z.shape
    params = [rng.normal(0, 1 / np.sqrt(f), (f, hidden)), rng.normal(0, 1 / np.sqrt(hidden), hidden)]
    m1 = [np.zeros_like(p) for p in params]
    m2 = [np.zeros_like(p) for p in params]
    for t in range(1, iterations + 1):
        W, v = params
        H = np.tanh(Z @ W)
        ds = -1.0 / (1.0 + np.exp(np.clip(H @ v, -30, 30))) / n  # d softplus(−s) / ds, averaged
        grads = [Z.T @ (np.outer(ds, v) * (1 - H ** 2)) + lam * W, H.T @ ds + lam * v]
        for i, g in enumerate(grads):
            m1[i] = 0.9 * m1[i] + 0.1 * g
            m2[i] = 0.999 * m2[i] + 0.001 * g * g
            params[i] = params[i] - 0.01 * (m1[i] / (1 - 0.9 ** t)) / (np.sqrt(m2[i] / (1 - 0.999 ** t)) + 1e-8)
    return params[0], params[1]


def head_score(X: np.ndarray, head: dict[str, Any]) -> np.ndarray:
    """Score of feature vectors (..., F) with a fitted head (:func:`fit_head`): > 0 keeps the hand."""
    Z = np.asarray(X, dtype=np.float64) / head["scale"]
    if head["kind"] == "odd-mlp":
        return np.tanh(Z @ head["hidden"]) @ head["weights"]
    return Z @ head["weights"]


def fit_head(X: np.ndarray, kind: str, lam: float, hidden: int = 16, seed: int = 0) -> dict[str, Any]:
    """Fit a ``linear`` (:func:`fit_logistic`, both hands shown) or ``odd-mlp`` head on L-hand features X (n, F)."""
    scale = np.abs(X).mean(axis=0) + 1e-12
    if kind == "odd-mlp":
        W, v = fit_odd_mlp(X / scale, hidden, lam, seed=seed)
        return {"kind": kind, "scale": scale, "hidden": W, "weights": v}
    w, scale = fit_logistic(np.concatenate([X, -X]), np.r_[np.ones(len(X)), np.zeros(len(X))], lam)
    return {"kind": "linear", "scale": scale, "weights": w}


def stratified_accuracy(score: np.ndarray, n_residues: np.ndarray, d_min: np.ndarray) -> dict[str, Any]:
    """Accuracy of scores of L-hand maps (right when > 0) overall, by length and by resolution bin."""
    right = np.asarray(score) > 0
    out: dict[str, Any] = {"n": int(len(right)), "accuracy": float(right.mean())}
    for name, values, bins in (("by_length", n_residues, ((2, 2), (3, 5), (6, 10), (11, 15))),
                               ("by_d_min", d_min, ((1.5, 1.75), (1.75, 2.0), (2.0, 2.25), (2.25, 2.5)))):
        rows = {}
        for lo, hi in bins:
            m = (values >= lo) & (values <= hi) if name == "by_length" else (values >= lo) & (values < hi + 1e-6)
            if m.any():
                rows[f"{lo:g}-{hi:g}"] = {"n": int(m.sum()), "accuracy": float(right[m].mean())}
        out[name] = rows
    return out


#: heads tried by :func:`choose_head` (kind, L2 penalty); an ``odd-mlp`` head did no better than the linear one
#: in a grouped cross-validation on the test families' features (pseudoscalar-v2), so it is not tried by default
HEADS = (("linear", 1e-3), ("linear", 1e-2), ("linear", 1e-1))


def choose_head(train: dict[str, np.ndarray], heads=HEADS, folds: int = 5, seed: int = 0
                ) -> tuple[tuple[str, float], list[dict[str, Any]]]:
    """The head (kind, penalty) with the best cross-validated accuracy on the train maps (all phase-error
    levels together); folds by PDB entry (the id's prefix), so fragments of one chain stay together."""
    entries = np.array([str(i).split("_")[0] for i in train["ids"]])
    unique = np.unique(entries)
    folds = min(folds, len(unique))
    if folds < 2:
        raise CrysError("The hand model needs training maps from at least 2 structures to cross-validate.")
    fold_of = dict(zip(np.random.default_rng(seed).permutation(unique), np.arange(len(unique)) % folds))
    fold = np.array([fold_of[e] for e in entries])
    X = train["X"]
    table = []
    for kind, lam in heads:
        right = []
        for k in range(folds):
            head = fit_head(X[fold != k].reshape(-1, X.shape[-1]), kind, lam, seed=seed)
            right.append(head_score(X[fold == k], head).ravel() > 0)
        table.append({"head": kind, "lambda": lam, "cv_accuracy": float(np.concatenate(right).mean())})
    best = max(table, key=lambda r: r["cv_accuracy"])
    return (best["head"], best["lambda"]), table


def true_map_metrics(test: dict[str, np.ndarray], head: dict[str, Any]) -> dict[str, Any]:
    """Held-out accuracy per simulated phase error (stratified) and the calibration of the confidence."""
    return score_metrics(head_score(test["X"], head), test)


def score_metrics(scores: np.ndarray, test: dict[str, np.ndarray]) -> dict[str, Any]:
    """:func:`true_map_metrics` of scores (n, E) of L-hand test maps (> 0 right), one column per phase error."""
    out: dict[str, Any] = {}
    for j, err in enumerate(test["phase_errors"]):
        out[f"phase_error_{err:g}"] = stratified_accuracy(scores[:, j], test["n_residues"], test["d_min"])
    conf = 1.0 / (1.0 + np.exp(-np.abs(scores.ravel())))
    right = scores.ravel() > 0
    out["calibration"] = [{"confidence": f"{lo:.2f}-{hi:.2f}", "n": int(m.sum()),
                           "mean_confidence": float(conf[m].mean()), "accuracy": float(right[m].mean())}
                          for lo, hi in ((0.5, 0.7), (0.7, 0.9), (0.9, 0.99), (0.99, 1.0001))
                          if (m := (conf >= lo) & (conf < hi)).any()]
    return out


def fit_true_maps(data: str | Path, out: str | Path, every: int = 5, test_every: int = 6,
                  phase_errors=PHASE_ERRORS, feature_set: str = "pseudoscalar-v2", seed: int = 0,
                  progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Fit a hand model on true train-family maps (and their phase-degraded copies, :func:`degraded_map`) and
    measure it on the test families' maps; writes ``out/hand_chirality.json`` (returned).  Features are
    cached in ``out`` by a key of the dataset, the rows, the degradations and the feature set."""
    ds = open_dataset(data)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)

    def features(split: str, step: int) -> dict[str, np.ndarray]:
        key = _cache_key([str(ds.root.resolve()), split, step, list(phase_errors), seed, feature_set, list(SIGMAS)])
        return _cached(out / f"features-true-{split}-{key}.npz",
                       lambda: true_map_features(ds.root, split, step, phase_errors, seed, feature_set, progress))

    train, test = features("train", every), features("test", test_every)
    (kind, lam), cv = choose_head(train, seed=seed)
    head = fit_head(train["X"].reshape(-1, train["X"].shape[-1]), kind, lam, seed=seed)
    card = {
        "format": CARD_FORMAT, "task": TASK, "name": out.name,
        "description": "Hand (L vs D) of a solved fragment density map (1.5-2.5 Å, 2-15 residues) from "
                       "rotation-invariant pseudoscalar features; score > 0 keeps the map, < 0 inverts it "
                       "through the cell centre.  Meaningless on an unsolved map.",
        "input": "refined", "feature_set": feature_set, "sigmas": list(SIGMAS), "head": kind,
        "weights": head["weights"].tolist(), "scale": head["scale"].tolist(),
        **({"hidden": head["hidden"].tolist()} if kind == "odd-mlp" else {}),
        "training": {"dataset": str(ds.root), "maps": "true densities of the train families to each example's "
                     "d_min, without F(000), rms units, with von Mises phase errors of these means (degrees)",
                     "phase_errors": list(phase_errors), "every": every, "n_train_maps": int(len(train["ids"])),
                     "seed": seed, "lambda": lam, "cv": cv},
        "metrics": {"test": {"maps": f"every {test_every}th test-family example of {ds.root}",
                             **true_map_metrics(test, head)}},
    }
    return write_card(card, out)


# ------------------------------------------------------------------ ensembles: one linear card for a mean of cards
def average_linear_cards(cards: list[Any], name: str) -> dict[str, Any]:
    """One ``linear`` hand-chirality card whose logit is the equal-weight mean of the members' logits.

    ``cards``: two or more ``hand-chirality`` cards (ModelCards or dicts) with linear heads, the same blurs σ (Å)
    and the same ``input``, whose feature sets nest (:data:`FEATURE_PREFIXES`).  Member m scores
    Σ_i f_i w_mi / s_mi over its first F_m features; with the widest member's feature set and scale s, the mean
    is Σ_j f_j W_j / s_j with W_j = (1/M) Σ_m w_mj s_j / s_mj (w_mj = 0 beyond F_m): exact, not fitted.
    CrysError (one sentence) when the cards cannot be averaged so.  The card has no ``metrics``."""
    if len(cards) < 2:
        raise CrysError("An average of hand models needs two or more cards.")
    heads = []
    for card in cards:
        label = card.get("name", "(unnamed)")
        if card.get("task") != TASK or card.get("head", "linear") != "linear":
            raise CrysError(f"The hand model {label} is not a linear hand-chirality card; only linear heads average "
                            "into one linear card.")
        heads.append(chirality_head(card))
    sigmas, inputs = {tuple(h[0]) for h in heads}, {str(c.get("input", "prediction")) for c in cards}
    widest = max(heads, key=lambda h: len(h[2]["weights"]))[1]
    if len(sigmas) > 1 or len(inputs) > 1 or any(h[1] != widest and h[1] not in FEATURE_PREFIXES.get(widest, ())
                                                  for h in heads):
        raise CrysError("These hand models do not nest into one linear card: they need the same blurs, the same "
                        "input and feature sets that extend one another.")
    scale = next(h[2]["scale"] for h in heads if h[1] == widest)
    weights = np.zeros(len(scale))
    for _, _, p in heads:
        n = len(p["weights"])
        weights[:n] += p["weights"] * scale[:n] / p["scale"] / len(heads)
    members = [{"name": c.get("name"), "feature_set": h[1], "weight": 1.0 / len(heads), "created": c.get("created")}
               for c, h in zip(cards, heads)]
    return {
        "format": CARD_FORMAT, "task": TASK, "name": name,
        "description": "Hand (L vs D) of a density-modified fragment map: the equal-weight mean of the logits of "
                       + ", ".join(str(m["name"]) for m in members) + " (rotation-invariant pseudoscalar features, "
                       "one linear score); score > 0 keeps the map, < 0 inverts it through the cell centre.",
        "input": inputs.pop(), "feature_set": widest, "sigmas": list(sigmas.pop()), "head": "linear",
        "weights": weights.tolist(), "scale": np.asarray(scale).tolist(),
        "training": {"ensemble_of": members, "rule": "equal-weight mean of the members' logits, fixed before any "
                     "measurement (no fitted weight); the weights are the members' mapped onto this card's scale"},
    }


def write_card(card: dict[str, Any], out: Path) -> dict[str, Any]:
    """Write ``card`` to ``out/hand_chirality.json`` whole or not at all (:func:`crysplugins.crystal.io.atomic_path`);
    returns it."""
    with atomic_path(out / "hand_chirality.json") as tmp:
        tmp.write_text(json.dumps(card, indent=1))
    return card


def write_average_card(names: list[str], out: str | Path) -> dict[str, Any]:
    """``train hand-chirality --average A,B``: :func:`average_linear_cards` of the installed cards ``names``,
    written to ``out/hand_chirality.json`` (``crysplugins export out`` installs it as ``models/<out name>.json``)."""
    out = Path(out)
    card = average_linear_cards([find_card(n) for n in names], out.name)
    out.mkdir(parents=True, exist_ok=True)
    return write_card(card, out)
