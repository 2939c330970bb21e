"""Side-by-side evaluation of predictors on the same test files (paper fig. 7 style).

For each example (an amplitudes MTZ with F, SIGF and a true-phases MTZ with F, PHI — the dataset's
``test_mtz/<id>_amplitudes.mtz`` / ``<id>_phases.mtz``) and each predictor:

1. run the predictor through the host on exactly the same inputs: the amplitudes MTZ goes to its
   REFLECTIONS input, the sequence (dataset index or ``<id>.seq``) to its SEQUENCE input, and extra
   ``key=value`` options of the predictor label (``patterson-density:refine=yes``) to the inputs of
   those names; wall time is measured around ``predict``;
2. take its phases (an output MTZ with a PHI column, else the Fourier coefficients of its first map);
3. for predictors with ``origin_arbitrary`` search the best origin shift and hand
   (:func:`crysplugins.crystal.origin.search_origin_hand`); others are compared as placed;
4. score: amplitude-weighted mean phase error (degrees; weights = true |F|), the same in 12 equal-count
   shells, Pearson of the (aligned) predicted map with the true map on the predicted map's grid
   (paper eq. 7; when the predictor returns no map, the |F_true|·exp(iφ_pred) synthesis) and the
   Pearson of |FFT| of both maps.

The summary per predictor and resolution: success rate (mean phase error < 60°), median phase error,
median Pearson, median time; per shell the fraction of examples < 60° (paper fig. 7).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import gemmi
import numpy as np

from crysplugins.crystal import io
from crysplugins.crystal.fourier import FourierGrid, fourier_grid, usable_reflections
from crysplugins.crystal.metrics import (fft_amplitude_pearson, fraction_solved_by_shell, pearson, phase_error,
                                         phase_error_shells)
from crysplugins.crystal.origin import apply_origin_hand, search_origin_hand
from crysplugins.errors import CrysError
from crysplugins.datasets.store import open_dataset
from crysplugins.interface import CrystalMap, Kind, Prediction, Predictor, Request, Scalar
from crysplugins.inputs import input_name, load_input
from crysplugins.request import load_request_inputs, run_prediction

SUCCESS_CUTOFF = 60.0  # degrees (paper section 5: phases considered solved below ~60°)


@dataclass
class Example:
    """One test example: id, the two MTZ files, sequence (or None), resolution (Å) and fragment length."""

    id: str
    amplitudes: Path
    phases: Path
    sequence: str | None = None
    d_min: float | None = None
    n_residues: int | None = None


@dataclass
class PredictorLabel:
    """``name[:key=value,key=value]`` — a predictor and extra inputs for it (names as in its inputs)."""

    label: str
    name: str
    options: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> "PredictorLabel":
        name, _, rest = text.partition(":")
        options: dict[str, str] = {}
        for part in filter(None, (p.strip() for p in rest.split(","))):
            if "=" not in part:
                raise CrysError(f"'{part}' in --predictor {text} is not an option; write NAME:key=value,key=value.")
            k, v = (s.strip() for s in part.split("=", 1))
            options[k.replace("-", "_")] = v
        if not name.strip():
            raise CrysError(f"--predictor '{text}' names no predictor.")
        return cls(label=text, name=name.strip(), options=options)


# ------------------------------------------------------------------------------------------ examples

def examples_from_mtz_dir(folder: str | Path, limit: int | None = None) -> list[Example]:
    """Pairs ``<id>_amplitudes.mtz`` + ``<id>_phases.mtz`` in ``folder`` (sequence from ``<id>.seq`` if present)."""
    root = Path(folder)
    if not root.is_dir():
        raise CrysError(f"The folder {root} does not exist.")
    out = []
    for amp in sorted(root.glob("*_amplitudes.mtz")):
        ex_id = amp.name[: -len("_amplitudes.mtz")]
        ph = root / f"{ex_id}_phases.mtz"
        if not ph.exists():
            continue
        seq_file = root / f"{ex_id}.seq"
        seq = None
        if seq_file.exists():
            seq = io.read_sequence(str(seq_file)).residues
        out.append(Example(ex_id, amp, ph, seq, None, len(seq) if seq else None))
    if not out:
        raise CrysError(f"{root} holds no <id>_amplitudes.mtz + <id>_phases.mtz pairs.")
    return out[:limit] if limit else out


def examples_from_dataset(folder: str | Path, split: str = "test", limit: int | None = None) -> list[Example]:
    """The examples of a dataset split that have test MTZ files (dataset format, docs/CONTRACTS.md)."""
    ds = open_dataset(folder)
    out = []
    for row in ds.examples(split):
        amp, ph = ds.test_mtz(row["id"])
        if amp.exists() and ph.exists():
            seq = row.get("sequence") or None
            out.append(Example(row["id"], amp, ph, seq, float(row["d_min"]) if row.get("d_min") else None,
                               len(seq) if seq else None))
        if limit and len(out) >= limit:
            break
    if not out:
        raise CrysError(f"The {split} split of {folder} has no test MTZ files (test_mtz/<id>_amplitudes.mtz).")
    return out


# ------------------------------------------------------------------------------------------ running

def predictor_inputs(predictor: Any, label: PredictorLabel, example: Example) -> dict[str, Any]:
    """Raw input values for ``predictor``: the amplitudes MTZ, the sequence and the label's options."""
    values: dict[str, Any] = {}
    specs = list(predictor.inputs)
    names = {s.name for s in specs}
    refl = [s for s in specs if s.kind is Kind.REFLECTIONS]
    if not refl:
        raise CrysError(f"{predictor.name} takes no reflections input, so it cannot be evaluated on MTZ files.")
    preferred = [s for s in refl if s.required] or refl
    values[preferred[0].name] = str(example.amplitudes)
    seq_specs = [s for s in specs if s.kind is Kind.SEQUENCE]
    if seq_specs and example.sequence:
        values[seq_specs[0].name] = example.sequence
    for key, value in label.options.items():
        name = input_name(specs, key)
        if name is None:
            raise CrysError(f"{predictor.name} has no input '{key}' (inputs: {', '.join(sorted(names))}).")
        values[name] = value
    return values


def request_for(host: Any, label: PredictorLabel, example: Example) -> tuple[Predictor, Request]:
    """The predictor of ``label`` and its request for ``example``: inputs loaded like the CLI does, the
    host's refiners."""
    predictor = host.get(label.name)
    inputs = load_request_inputs(predictor, predictor_inputs(predictor, label, example))
    return predictor, Request(inputs, refiners={name: entry.refiner for name, entry in host.refiners.items()})


def run_one(host: Any, label: PredictorLabel, example: Example) -> tuple[Prediction, float]:
    """Load the inputs like the CLI does, run the predictor, return (prediction, seconds)."""
    predictor, request = request_for(host, label, example)
    t0 = time.perf_counter()
    prediction = run_prediction(predictor, request.inputs, refiners=request.refiners)
    return prediction, time.perf_counter() - t0


# ------------------------------------------------------------------------------------------ scoring

def true_data(example: Example) -> tuple[gemmi.UnitCell, np.ndarray, np.ndarray, np.ndarray]:
    """(cell, hkl, true |F|, true φ in degrees) of an example's phases MTZ, usable reflections only."""
    refl = io.read_mtz(example.phases, need=("F", "PHI"))
    hkl = refl.miller_array().astype(np.int64)
    f = refl.values("F")
    phi = refl.values("PHI")
    ok = usable_reflections(hkl, f, phi)
    return refl.cell, hkl[ok], f[ok], phi[ok]


_true_data = true_data  # the older name, still imported by the hand-chirality fit


def _lookup(hkl: np.ndarray, src_hkl: np.ndarray, src_phi: np.ndarray) -> np.ndarray:
    """Phases (degrees) of ``src`` at ``hkl``, using Friedel mates (φ(−h) = −φ(h)); NaN when absent."""
    table = {tuple(h): p for h, p in zip(src_hkl.tolist(), src_phi.tolist())}
    out = np.full(len(hkl), np.nan)
    for i, h in enumerate(hkl.tolist()):
        p = table.get(tuple(h))
        if p is None:
            p = table.get((-h[0], -h[1], -h[2]))
            p = None if p is None else -p
        if p is not None:
            out[i] = p
    return out


def predicted_phases(prediction: Prediction, cell, hkl: np.ndarray) -> tuple[np.ndarray, str]:
    """Phases (degrees) at ``hkl`` from the prediction: an MTZ with PHI, else its first map."""
    for name, refl in prediction.reflections.items():
        label = refl.columns.get("PHI")
        if label is None:
            labels = [c.label for c in refl.mtz.columns if c.type == "P"]
            label = labels[0] if labels else None
        if label is None:
            continue
        src_hkl = refl.miller_array().astype(np.int64)
        src_phi = np.asarray(refl.mtz.column_with_label(label).array, dtype=np.float64)
        phi = _lookup(hkl, src_hkl, src_phi)
        if np.isfinite(phi).mean() > 0.5:
            return phi, f"reflections:{name}"
    for name, cmap in prediction.maps.items():
        if not cmap.cell.approx(cell, 1e-2):
            continue
        try:
            fg = FourierGrid(hkl, cmap.shape, float(cell.volume))
        except ValueError:
            continue
        f, _ = fg.from_map(np.asarray(cmap.array, dtype=np.float64))
        return np.degrees(np.angle(f)), f"map:{name}"
    raise CrysError("The prediction holds neither phases nor a map fine enough for the reflections.")


def score_prediction(prediction: Prediction, example: Example, origin_arbitrary: bool,
                     n_shells: int = 12) -> dict[str, Any]:
    """Phase error (overall and per shell) and map Pearson of one prediction against the truth."""
    cell, hkl, f, phi_true = true_data(example)
    phi_pred, source = predicted_phases(prediction, cell, hkl)
    ok = np.isfinite(phi_pred)
    shift, inverted = np.zeros(3), False
    if origin_arbitrary:
        res = search_origin_hand(hkl[ok], f[ok], phi_true[ok], phi_pred[ok])
        shift, inverted = res.shift, res.inverted
        aligned = phi_pred.copy()
        aligned[ok] = res.phases
    else:
        aligned = phi_pred
    err = phase_error(None, phi_true[ok], aligned[ok], f[ok])
    shells = phase_error_shells(hkl[ok], cell, phi_true[ok], aligned[ok], f[ok], n_shells)
    # maps: the predicted map (aligned) against the true map on the same grid
    cmap = next((m for m in prediction.maps.values() if m.cell.approx(cell, 1e-2)), None)
    fg = None
    if cmap is not None:
        try:
            fg = FourierGrid(hkl, cmap.shape, float(cell.volume))
        except ValueError:
            fg = None
    if fg is not None and cmap is not None:
        pred_map = np.asarray(cmap.array, dtype=np.float64)
        if origin_arbitrary:
            pred_map = apply_origin_hand(pred_map, shift, inverted)
    else:
        fg = fourier_grid(cell, hkl)
        pred_map = fg.to_map(np.where(ok, f, 0.0) * np.exp(1j * np.deg2rad(np.nan_to_num(aligned))))
    true_map = fg.to_map(f * np.exp(1j * np.deg2rad(phi_true)))
    as_placed = np.asarray(cmap.array, dtype=np.float64) if cmap is not None and fg.shape == tuple(cmap.shape) \
        else None
    return {
        "phase_error": err,
        "pearson": pearson(true_map, pred_map),
        # the map exactly as returned: what a user overlays on the model (the training data's placement)
        "pearson_as_placed": pearson(true_map, as_placed) if as_placed is not None else float("nan"),
        "fft_pearson": fft_amplitude_pearson(true_map, pred_map),
        "shells": shells,
        "phase_source": source,
        "origin_shift": [float(x) for x in shift],
        "hand_inverted": bool(inverted),
        "reflections_compared": int(ok.sum()),
    }


# ------------------------------------------------------------------------------------------ driver

def _failed(rec: dict[str, Any], exc: Exception) -> None:
    rec.update({"error": str(exc), "phase_error": float("nan"), "pearson": float("nan"),
                "fft_pearson": float("nan"), "shells": [], "seconds": float("nan")})


def refine_prediction(refiner: Any, prediction: Prediction, example: Example) -> tuple[Prediction, float, Any]:
    """Run a registered refiner on a prediction's map against the example's amplitudes.

    The starting map is the prediction's first map on the example's cell, else the |F_obs|·exp(iφ_pred)
    synthesis; the envelope comes from the example's sequence.  Returns (prediction of the refined map and
    phases, seconds, RefineResult).
    """
    obs = io.read_mtz(example.amplitudes, need=("F|I",))
    cell = obs.cell
    cmap = next((m for m in prediction.maps.values() if m.cell.approx(cell, 1e-2)), None)
    t0 = time.perf_counter()
    if cmap is None:
        hkl = obs.miller_array().astype(np.int64)
        phi, _ = predicted_phases(prediction, cell, hkl)
        fg = fourier_grid(cell, hkl)
        f = np.nan_to_num(obs.amplitudes())
        cmap = CrystalMap.from_array(fg.to_map(np.where(np.isfinite(phi), f, 0.0) *
                                               np.exp(1j * np.deg2rad(np.nan_to_num(phi)))), cell, "P 1")
    if not example.sequence:
        raise CrysError(f"Refining {example.id} needs its sequence (a <id>.seq file or the dataset index).")
    result = refiner.refine(cmap, obs, sequence=example.sequence)
    seconds = time.perf_counter() - t0
    out = Prediction(maps={"refined": result.map}, reflections={"phases": result.reflections("phases")},
                     meta={"refined": result.refined})
    out.scalars["refine_score"] = Scalar(result.score)
    return out, seconds, result


def evaluate(host: Any, labels: list[PredictorLabel], examples: list[Example],
             progress: Callable[[str], None] | None = None, origin: str = "declared",
             refiners: list[str] | tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Run every predictor on every example; one record per (predictor, example).

    ``origin``: ``"declared"`` searches origin and hand for predictors with ``origin_arbitrary`` only (the
    default), ``"always"`` for every predictor (e.g. to see how far density modification let the origin
    drift), ``"never"`` compares everything as placed.  ``refiners``: names of registered refiners applied
    to every prediction afterwards (:func:`refine_prediction`); each adds records labelled
    ``"<predictor> + <refiner>"`` whose time is prediction plus refinement, so "transformer + refinement"
    can be compared with any predictor, whether or not it has a refinement input of its own.

    A predictor error on one example (CrysError) is recorded as a failure (phase error NaN) and the run
    goes on, so one bad file cannot hide the rest.
    """
    if origin not in ("declared", "always", "never"):
        raise CrysError(f"The origin mode must be declared, always or never, not '{origin}'.")
    for label in labels:  # user errors in the labels fail before any work
        specs = {s.name: s for s in host.get(label.name).inputs}
        for key, value in label.options.items():
            name = input_name(list(specs.values()), key)
            if name is None:
                raise CrysError(f"{label.name} has no input '{key}' (inputs: {', '.join(sorted(specs))}).")
            if specs[name].kind in (Kind.FLOAT, Kind.INT, Kind.BOOL, Kind.CHOICE):
                load_input(specs[name], value)  # 'starts=abc' is refused here, not as a table of NaN
    refiner_objs = [(name, host.get_refiner(name)) for name in refiners]
    records = []
    for label in labels:
        predictor = host.get(label.name)
        arbitrary = {"always": True, "never": False}.get(origin, bool(getattr(predictor, "origin_arbitrary", False)))
        for ex in examples:
            if ex.d_min is None:
                ex.d_min = round(float(io.read_mtz(ex.amplitudes, need=("F|I",)).d_min), 2)
            base = {"id": ex.id, "n_residues": ex.n_residues, "d_min": ex.d_min}
            rec: dict[str, Any] = dict(base, predictor=label.label, origin_arbitrary=arbitrary)
            prediction = None
            try:
                prediction, seconds = run_one(host, label, ex)
                rec["seconds"] = seconds
                rec.update(score_prediction(prediction, ex, arbitrary))
                refined = prediction.meta.get("refined")
                if refined is not None:
                    rec["refined"] = bool(refined)
                rec["scalars"] = {k: float(v.value) for k, v in prediction.scalars.items()
                                  if isinstance(v.value, (int, float))}
            except CrysError as exc:
                _failed(rec, exc)
                prediction = None
            out = [rec]
            for rname, refiner in refiner_objs:
                # the refiner keeps the start's origin, so the predictor's own origin convention applies
                rrec: dict[str, Any] = dict(base, predictor=f"{label.label} + {rname}", origin_arbitrary=arbitrary)
                try:
                    if prediction is None:
                        raise CrysError(f"{label.label} failed on {ex.id}, so there is nothing to refine.")
                    refined_pred, rsec, result = refine_prediction(refiner, prediction, ex)
                    rrec["seconds"] = rec["seconds"] + rsec
                    rrec.update(score_prediction(refined_pred, ex, arbitrary))
                    rrec["refined"] = bool(result.refined)
                    rrec["scalars"] = {"refine_score": float(result.score)}
                except CrysError as exc:
                    _failed(rrec, exc)
                out.append(rrec)
            records.extend(out)
            if progress is not None:
                for r in out:
                    progress(f"{r['predictor']} {ex.id}: phase error {r['phase_error']:.1f}°, "
                             f"Pearson {r['pearson']:.3f}, {r.get('seconds', float('nan')):.2f} s")
    return records


def summarise(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per predictor and stratum (fragment length × d_min rounded to 0.01 Å): n, success rate, medians,
    the mean as-placed Pearson, shells.  The phase error is origin- and hand-invariant for predictors whose
    origin is arbitrary (see :func:`evaluate`)."""
    groups: dict[tuple[str, int, float], list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault((r["predictor"], int(r.get("n_residues") or 0), round(float(r["d_min"]), 2)), []).append(r)
    rows = []
    for (label, n_res, d_min), recs in sorted(groups.items()):
        pe = np.array([r["phase_error"] for r in recs], dtype=float)
        pc = np.array([r["pearson"] for r in recs], dtype=float)
        placed = np.array([r.get("pearson_as_placed", np.nan) for r in recs], dtype=float)
        tm = np.array([r.get("seconds", np.nan) for r in recs], dtype=float)
        rows.append({
            "predictor": label, "n_residues": n_res or None, "d_min": d_min, "n": len(recs),
            "mean_pearson_as_placed": float(np.nanmean(placed)) if np.isfinite(placed).any() else float("nan"),
            "success_rate": float(np.mean(np.nan_to_num(pe, nan=180.0) < SUCCESS_CUTOFF)),
            "median_phase_error": float(np.nanmedian(pe)) if np.isfinite(pe).any() else float("nan"),
            "mean_phase_error": float(np.nanmean(pe)) if np.isfinite(pe).any() else float("nan"),
            "median_pearson": float(np.nanmedian(pc)) if np.isfinite(pc).any() else float("nan"),
            "mean_pearson": float(np.nanmean(pc)) if np.isfinite(pc).any() else float("nan"),
            "median_seconds": float(np.nanmedian(tm)) if np.isfinite(tm).any() else float("nan"),
            "errors": int(sum(1 for r in recs if "error" in r)),
            "shells": fraction_solved_by_shell([r["shells"] for r in recs if r["shells"]], SUCCESS_CUTOFF),
        })
    return rows


def table_text(rows: list[dict[str, Any]]) -> str:
    """A Markdown table of the summary rows."""
    lines = ["| predictor | residues | d_min (Å) | n | success (< 60°) | median phase error (°) | median Pearson "
             "| mean Pearson as placed | median time (s) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        name = str(r["predictor"]).replace("|", "\\|")  # a label may hold '|' (e.g. "charge-flipping | 2 res")
        lines.append(f"| {name} | {r.get('n_residues') or '—'} | {r['d_min']:.2f} | {r['n']} | {r['success_rate']:.0%} | "
                     f"{r['median_phase_error']:.1f} | {r['median_pearson']:.3f} | "
                     f"{r.get('mean_pearson_as_placed', float('nan')):.3f} | {r['median_seconds']:.2f} |")
    return "\n".join(lines) + "\n"


def write_results(out: Path, records: list[dict[str, Any]], rows: list[dict[str, Any]],
                  meta: dict[str, Any]) -> dict[str, str]:
    """results.json (records + summary), summary.tsv, summary.md and, with matplotlib, shells.png."""
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    payload = {"meta": meta, "summary": rows, "records": records}
    with io.atomic_path(out / "results.json") as tmp:
        tmp.write_text(json.dumps(payload, indent=2, default=_json_default))
    files["json"] = str(out / "results.json")
    cols = ["predictor", "d_min", "n", "success_rate", "median_phase_error", "mean_phase_error",
            "median_pearson", "mean_pearson", "median_seconds", "errors"]
    tsv = ["\t".join(cols)] + ["\t".join(_cell(r[c]) for c in cols) for r in rows]
    with io.atomic_path(out / "summary.tsv") as tmp:
        tmp.write_text("\n".join(tsv) + "\n")
    files["tsv"] = str(out / "summary.tsv")
    with io.atomic_path(out / "summary.md") as tmp:
        tmp.write_text(table_text(rows))
    files["markdown"] = str(out / "summary.md")
    png = plot_shells(out / "shells.png", rows)
    if png:
        files["png"] = png
    return files


def plot_shells(path: Path, rows: list[dict[str, Any]]) -> str | None:
    """Fraction of examples < 60° per resolution shell, one line per predictor and d_min (paper fig. 7)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(8, 4.5))
    names = sorted({r["predictor"] for r in rows})
    d_values = sorted({r["d_min"] for r in rows})
    cmap = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
    styles = ["-", "--", ":", "-."]
    for r in rows:
        if not r["shells"]:
            continue
        x = [1.0 / s["d_min"] ** 2 for s in r["shells"]]
        y = [s["fraction_below"] for s in r["shells"]]
        ax.plot(x, y, marker="o", markersize=3, color=cmap(names.index(r["predictor"]) % cmap.N),
                linestyle=styles[d_values.index(r["d_min"]) % len(styles)],
                label=f"{r['predictor']} ({r['d_min']:.2f} Å)")
    ax.set_xlabel("1/d² of shell (Å⁻²), low resolution left")
    ax.set_ylabel("fraction with phase error < 60°")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=7)
    fig.tight_layout()
    with io.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return str(path)


def _cell(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    return str(o)
