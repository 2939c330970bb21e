"""``crysplugins dataset templates RUN_DIR --data DIR``: recycling templates for every example.

RecCrysFormer paper 000, section 4 and appendix E.  For every example of the train and test splits:

1. the previous run's model predicts the density from the Patterson map (+ sequence; + the example's
   template of an earlier template set when the model itself is a recycled, two-channel one);
2. the prediction is refined by density modification (:func:`crysplugins.crystal.refine.density_modify`,
   the in-process stand-in for the paper's SHELXE) against the example's true amplitudes |F|: for test
   examples from ``test_mtz/<id>_amplitudes.mtz`` when present, otherwise |F(h)| of the un-normalised
   dataset density (x·scale + offset, ``meta.json`` normalisation) at the reflections to the example's
   d_min (the dataset density is a resolution-limited F synthesis, so its FFT gives those F back, up to
   float16 rounding).  The solvent fraction comes from the sequence (1.23 Å³/Da);
3. the refined map (|F_obs|·exp(iφ_refined) on the dataset grid) is post-processed as in appendix E
   (:func:`crysplugins.crystal.templates.postprocess_template`) into a template in [-1, 1];
4. the refiner's score and "refined" flag are recorded (``refiner_refined``; ``is_refined`` is the flag the
   recycling run uses: the refiner's by default, or with ``--refined-rule phase-error`` an oracle label
   from the synthetic truth, see :data:`REFINED_RULES`), with evaluation figures against the truth:
   Pearson (eq. 7) of prediction and template with the true density, amplitude-weighted mean phase error
   (degrees) of the prediction and of the refined phases.

Output: ``DIR/templates/<name>/<shard stem>.npz`` (``rows``, ``ids``, ``prediction`` and ``refined`` float16
(n, N1, N2, N3) normalised maps, ``score``, ``is_refined``, ``refiner_refined``, ``pearson``, ``refined_pearson``,
``phase_error``, ``refined_phase_error``) and ``info.json`` (settings, model, per-split summary).
Resumable: a shard whose file exists is skipped, and inside a shard every chunk of ``--chunk`` examples
is kept in ``parts/`` until the shard is complete.  Changing the settings of an existing template set is
refused (use another ``--name``).

The model is any runner (an exported ONNX model, or a run's torch checkpoint); the command that picks
one is :mod:`crysplugins.templates_cli`.  Nothing here needs torch.
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import time
from pathlib import Path
from typing import Any, Callable

import gemmi
import numpy as np

from crysplugins.crystal.fourier import FourierGrid
from crysplugins.crystal.io import atomic_path, read_mtz
from crysplugins.crystal.maps import crystallographic_f
from crysplugins.crystal.metrics import pearson, phase_error
from crysplugins.crystal.refine import density_modify
from crysplugins.crystal.templates import postprocess_template
from crysplugins.datasets.store import open_dataset
from crysplugins.datasets.template_store import TemplateStore, choose_templates, with_template
from crysplugins.errors import CrysError
from crysplugins.interface import CrystalMap, ObservedAmplitudes

#: settings that must agree for a template set to be resumed
_SETTING_KEYS = ("model", "cycles", "fraction", "seed", "splits", "input_templates", "mode", "refined_rule")

#: ``--refined-rule``: "refiner" = the refiner's own decision (score >= its threshold, no ground truth);
#: "phase-error" = the refined phases are within ``--max-phase-error`` degrees of the true phases (an
#: oracle label from the synthetic data, the analogue of knowing that SHELXE succeeded; fine for training
#: templates, but it uses the truth, so test results made with it must say so)
REFINED_RULES = ("refiner", "phase-error")


# ------------------------------------------------------------------------------------ one example

def true_reflections(density_norm: np.ndarray, norm: dict, cell: gemmi.UnitCell, d_min: float
                     ) -> tuple[np.ndarray, np.ndarray]:
    """(hkl (m,3), complex F (electrons)) of an example from its normalised dataset density (see module doc)."""
    rho = np.asarray(density_norm, dtype=np.float64) * norm["scale"] + norm["offset"]
    return crystallographic_f(np.fft.rfftn(rho), cell, rho.shape, d_min)


def map_phases(array: np.ndarray, cell: gemmi.UnitCell, d_min: float, hkl: np.ndarray) -> np.ndarray:
    """Phases (degrees) of a whole-cell map at ``hkl`` (same hemisphere convention as :func:`true_reflections`)."""
    h2, vals = crystallographic_f(np.fft.rfftn(np.asarray(array, dtype=np.float64)), cell, array.shape, d_min)
    if h2.shape != hkl.shape or not np.array_equal(h2, hkl):
        raise ValueError("reflection lists differ")
    return np.degrees(np.angle(vals))


def refine_example(prediction: np.ndarray, density_norm: np.ndarray, cell_params: tuple, d_min: float,
                   sequence: str, norm: dict, cycles: int, amplitudes_mtz: str | None = None) -> dict[str, Any]:
    """Refine one prediction against the example's amplitudes; template + score + figures vs the truth."""
    cell = gemmi.UnitCell(*[float(v) for v in cell_params])
    hkl, f_true = true_reflections(density_norm, norm, cell, d_min)
    amp_true = np.abs(f_true)
    if amplitudes_mtz is not None:
        obs: Any = read_mtz(amplitudes_mtz, need=("F",))
    else:
        keep = amp_true > 0
        obs = ObservedAmplitudes(cell, gemmi.SpaceGroup("P 1"), hkl[keep], amp_true[keep])
    pred = np.asarray(prediction, dtype=np.float32)
    cmap = CrystalMap.from_array(pred, cell, gemmi.SpaceGroup("P 1"), name="prediction")
    res = density_modify(cmap, obs, sequence=sequence, cycles=cycles)
    shape = pred.shape
    fg = FourierGrid(res.hkl, shape, float(cell.volume))
    refined_map = fg.to_map(res.amplitudes * np.exp(1j * np.radians(res.phases)))
    template = postprocess_template(refined_map, cell)
    phi_true = np.degrees(np.angle(f_true))
    phi_pred = map_phases(pred, cell, d_min, hkl)
    phi_ref = map_phases(refined_map, cell, d_min, hkl)
    truth = np.asarray(density_norm, dtype=np.float32)
    return {"refined": template, "score": float(res.score), "is_refined": bool(res.refined),
            "pearson": pearson(pred, truth), "refined_pearson": pearson(template, truth),
            "phase_error": phase_error(hkl, phi_true, phi_pred, amp_true),
            "refined_phase_error": phase_error(hkl, phi_true, phi_ref, amp_true)}


def _refine_star(args: tuple) -> dict[str, Any]:
    return refine_example(*args)


# ------------------------------------------------------------------------------------ the builder

def select_rows(n: int, fraction: float, seed: int, key: str) -> np.ndarray:
    """Rows of a shard of n examples to process: all, or a reproducible random ``fraction`` (sorted)."""
    if fraction >= 1.0:
        return np.arange(n)
    k = max(1, int(round(n * fraction)))
    rng = np.random.default_rng([seed, int(hashlib.sha1(key.encode()).hexdigest()[:8], 16)])
    return np.sort(rng.choice(n, size=k, replace=False))


def build_templates(data: str | Path, runner: Any, name: str, cycles: int = 50, fraction: float = 1.0,
                    splits: tuple[str, ...] = ("train", "test"), batch_size: int = 8, chunk: int = 64,
                    workers: int = 1, seed: int = 0, input_templates: str | None = None,
                    progress: Callable[[str], None] | None = None,
                    test_fraction: float | None = None, refined_rule: str = "refiner",
                    max_phase_error: float = 60.0) -> dict[str, Any]:
    """Write the template set ``name`` for the dataset ``data`` (see the module docstring); returns a summary
    with ``computed`` / ``skipped`` shard names and per-split means.  ``fraction`` of each train shard
    (``test_fraction``, default the same, of each test shard) is processed."""
    ds = open_dataset(data)
    if cycles < 1:
        raise CrysError("--cycles must be at least 1.")
    if refined_rule not in REFINED_RULES:
        raise CrysError(f"--refined-rule must be one of {', '.join(REFINED_RULES)}.")
    test_fraction = fraction if test_fraction is None else test_fraction
    if not (0 < fraction <= 1 and 0 < test_fraction <= 1):
        raise CrysError("--fraction and --test-fraction must be in (0, 1].")
    fractions = {"train": float(fraction), "test": float(test_fraction)}
    out = ds.root / "templates" / name
    settings = {"model": runner.identity, "cycles": cycles, "fraction": fractions, "seed": seed,
                "splits": sorted(splits), "input_templates": input_templates, "mode": "density-modification",
                "refined_rule": refined_rule if refined_rule == "refiner" else f"phase-error<{max_phase_error:g}"}
    info_path = _open_template_set(out, settings)
    in_store = None
    if runner.in_channels > 1:
        if input_templates is None:
            raise CrysError("This model takes a template channel: give --input-templates NAME (the template "
                            "set it was trained with).")
        in_store = TemplateStore(ds.root, input_templates)
    norm = ds.meta["normalisation"]["density"]
    by_shard: dict[str, list[dict]] = {}
    for r in ds.index:
        by_shard.setdefault(r["shard"], []).append(r)
    computed, skipped = [], []
    pool = None
    if workers > 1:
        pool = mp.get_context("spawn").Pool(workers)
    t0 = time.monotonic()
    done_examples = 0
    try:
        for split in splits:
            for shard in ds.shards(split):
                stem = shard.path.stem
                final = out / f"{stem}.npz"
                if final.exists():
                    skipped.append(stem)
                    continue
                arrays = shard.load()
                rows_meta = {r["row"]: r for r in by_shard.get(shard.path.name, [])}
                rows = select_rows(shard.n, fractions[split], seed, stem)
                parts = []
                for k in range(0, len(rows), chunk):
                    part = out / "parts" / f"{stem}-{k // chunk:05d}.npz"
                    parts.append(part)
                    if part.exists():
                        continue
                    sel = rows[k:k + chunk]
                    pred = _predict(runner, arrays, sel, batch_size, in_store, shard.path.name)
                    jobs = _refine_jobs(ds, arrays, sel, pred, rows_meta, split == "test", norm, cycles)
                    results = pool.map(_refine_star, jobs) if pool is not None else [_refine_star(j) for j in jobs]
                    _save_npz(part, _part_arrays(arrays, sel, pred, results,
                                                 None if refined_rule == "refiner" else max_phase_error))
                    done_examples += len(sel)
                    if progress is not None:
                        rate = done_examples / max(time.monotonic() - t0, 1e-9)
                        progress(f"{stem}: {min(k + chunk, len(rows))}/{len(rows)} ({rate:.2f} examples/s)")
                _merge_parts(parts, final)
                computed.append(stem)
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    summary = {"name": name, "path": str(out), "computed": computed, "skipped": skipped,
               "seconds": round(time.monotonic() - t0, 1), "splits": summarise(ds.root, name, splits)}
    _write_json(info_path, {"settings": settings, "status": "done", "summary": summary["splits"],
                            "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())})
    return summary


def _open_template_set(out: Path, settings: dict[str, Any]) -> Path:
    """Start or resume the template set in ``out`` (refused when made with other settings); its info.json."""
    info_path = out / "info.json"
    if info_path.exists():
        old = json.loads(info_path.read_text()).get("settings", {})
        diff = [k for k in _SETTING_KEYS if old.get(k) != settings.get(k)]
        if diff:
            raise CrysError(f"The template set {out} was made with other settings ({', '.join(diff)}); "
                            "choose another --name or delete it.")
    (out / "parts").mkdir(parents=True, exist_ok=True)
    _write_json(info_path, {"settings": settings, "status": "running"})
    return info_path


def _predict(runner: Any, arrays: dict[str, np.ndarray], sel: np.ndarray, batch_size: int,
             in_store: TemplateStore | None, shard_name: str) -> np.ndarray:
    """The model's normalised density for rows ``sel`` of a shard, with the input template set's refined
    template as the second channel for a recycled model."""
    preds = []
    for b in range(0, len(sel), batch_size):
        idx = sel[b:b + batch_size]
        x = arrays["patterson"][idx].astype(np.float32)[:, None]
        if in_store is not None:
            tpl = in_store.lookup(shard_name, idx)
            if tpl is None:
                raise CrysError(f"The input template set '{in_store.name}' lacks rows of {Path(shard_name).stem}.")
            t, _ = choose_templates(tpl["prediction"], tpl["refined"], tpl["is_refined"], 1.0, None)
            x = with_template(x, t)
        preds.append(runner(x, arrays["sequence_index"][idx].astype(np.int64)))
    return np.concatenate(preds)


def _refine_jobs(ds: Any, arrays: dict[str, np.ndarray], sel: np.ndarray, pred: np.ndarray,
                 rows_meta: dict[int, dict], test: bool, norm: dict, cycles: int) -> list[tuple]:
    """Arguments of :func:`refine_example` per row (test rows refine against their MTZ when there is one)."""
    jobs = []
    for j, row in enumerate(sel):
        ex_id = str(arrays["ids"][row])
        mtz = None
        if test:
            amp, _ = ds.test_mtz(ex_id)
            mtz = str(amp) if amp.exists() else None
        seq_str = rows_meta.get(int(row), {}).get("sequence") or "".join(
            ds.meta["residue_types"][int(i)] for i in arrays["sequence_index"][row])
        jobs.append((pred[j], arrays["density"][row].astype(np.float32),
                     tuple(float(v) for v in arrays["cell"][row]), float(arrays["d_min"][row]),
                     seq_str, norm, cycles, mtz))
    return jobs


def _part_arrays(arrays: dict[str, np.ndarray], sel: np.ndarray, pred: np.ndarray, results: list[dict],
                 max_phase_error: float | None) -> dict[str, np.ndarray]:
    """One part file's arrays; ``is_refined`` is the refiner's flag, or with ``max_phase_error`` (degrees)
    the oracle label of the phase-error rule."""
    def column(key: str, dtype: Any) -> np.ndarray:
        return np.array([r[key] for r in results], dtype)

    refiner = column("is_refined", bool)
    oracle = None if max_phase_error is None else column("refined_phase_error", np.float64) < max_phase_error
    return {"rows": sel.astype(np.int64), "ids": np.array([str(arrays["ids"][r]) for r in sel]),
            "prediction": pred.astype(np.float16),
            "refined": np.stack([r["refined"] for r in results]).astype(np.float16),
            "score": column("score", np.float32), "is_refined": refiner if oracle is None else oracle,
            "refiner_refined": refiner, "pearson": column("pearson", np.float32),
            "refined_pearson": column("refined_pearson", np.float32), "phase_error": column("phase_error", np.float32),
            "refined_phase_error": column("refined_phase_error", np.float32)}


def _merge_parts(parts: list[Path], final: Path) -> None:
    """Join a shard's part files into its final file, then remove the parts."""
    merged: dict[str, list[np.ndarray]] = {}
    for part in parts:
        with np.load(part, allow_pickle=False) as z:
            for key in z.files:
                merged.setdefault(key, []).append(z[key])
    _save_npz(final, {k: np.concatenate(v) for k, v in merged.items()})
    for part in parts:
        part.unlink(missing_ok=True)


def summarise(data: str | Path, name: str, splits: tuple[str, ...] = ("train", "test")) -> dict[str, Any]:
    """Per-split means of a template set (only shards already written)."""
    root = Path(data) / "templates" / name
    out: dict[str, Any] = {}
    for split in splits:
        acc: dict[str, list[np.ndarray]] = {}
        for path in sorted(root.glob(f"{split}-*.npz")):
            with np.load(path, allow_pickle=False) as z:
                for key in ("score", "is_refined", "pearson", "refined_pearson", "phase_error", "refined_phase_error"):
                    acc.setdefault(key, []).append(z[key])
        if not acc:
            continue
        a = {k: np.concatenate(v) for k, v in acc.items()}
        out[split] = {"n": int(a["score"].size), "percent_refined": float(100 * a["is_refined"].mean()),
                      "mean_score": float(np.nanmean(a["score"])),
                      "mean_pearson": float(np.nanmean(a["pearson"])),
                      "mean_refined_pearson": float(np.nanmean(a["refined_pearson"])),
                      "mean_phase_error": float(np.nanmean(a["phase_error"])),
                      "mean_refined_phase_error": float(np.nanmean(a["refined_phase_error"]))}
    return out


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)


def _write_json(path: Path, obj: Any) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(obj, indent=1, default=str) + "\n")
