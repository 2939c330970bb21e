"""The one request path: raw user values → a checked :class:`~crysplugins.interface.Request` → a run → files.

The command line (``crysplugins predict`` and ``demo``), the Qt worker and the evaluation all go through
these functions, so they accept the same inputs, apply the same defaults, hand the predictor the same
refiners and write the same files.
"""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from crysplugins.crystal import io
from crysplugins.errors import CrysError
from crysplugins.inputs import input_flags, load_input, parse_columns
from crysplugins.validate import check_output_folder, writable_folder
from crysplugins.interface import (CancelToken, InputSpec, Prediction, Predictor, ProgressCallback, Refiner,
                                   Request, check_request, missing_input)

#: what a column choice may be: "F=FP,SIGF=SIGFP" (command line) or {"F": "FP"} (GUI dialog)
Columns = Mapping[str, str] | str | None


def load_request_inputs(predictor: Predictor, values: Mapping[str, Any],
                        columns: Mapping[str, Columns] | None = None) -> dict[str, Any]:
    """Load every given input value into crystal objects, fill in declared defaults and check the request.

    ``values`` maps input names to strings (file paths, numbers) or objects already loaded; ``columns``
    maps a REFLECTIONS input's name to its column choice.  A default of a plain type (numbers, strings,
    booleans) is loaded like a user's string, so it meets the same checks.
    """
    inputs: dict[str, Any] = {}
    flags = input_flags(predictor.inputs)
    for spec in predictor.inputs:
        chosen = (columns or {}).get(spec.name)
        value = load_input(spec, values.get(spec.name),
                           chosen if isinstance(chosen, Mapping) else parse_columns(chosen), flags[spec.name])
        if value is None and spec.default is not None:
            default = spec.default
            value = (load_input(spec, str(default), flag=flags[spec.name])
                     if isinstance(default, (int, float, str)) else default)
        if value is not None:
            inputs[spec.name] = value
    check_given(predictor, inputs, flags)
    check_request(predictor, inputs)
    return inputs


def check_given(predictor: Predictor, inputs: Mapping[str, Any], flags: Mapping[str, str]) -> None:
    """A missing required input, or an input group with no member given, in one sentence naming the flags."""
    missing = missing_input(predictor, inputs)
    if isinstance(missing, InputSpec):
        raise CrysError(f"{predictor.name} needs --{flags[missing.name]} ({missing.help}).")
    if missing:
        raise CrysError(f"{predictor.name} needs one of {' or '.join('--' + flags[n] for n in missing)}.")


def run_prediction(predictor: Predictor, inputs: dict[str, Any], progress: ProgressCallback | None = None,
                   cancel: CancelToken | None = None, refiners: Mapping[str, Refiner] | None = None) -> Prediction:
    """Run ``predictor`` on loaded ``inputs``; the refiners default to the host's registry."""
    if refiners is None:
        from crysplugins.host import default_host  # the host loads every plugin: only when a run needs it

        refiners = {name: entry.refiner for name, entry in default_host().refiners.items()}
    request = Request(inputs=inputs, progress=progress, cancel=cancel or CancelToken(), refiners=dict(refiners))
    prediction = predictor.predict(request)
    if not isinstance(prediction, Prediction):
        raise CrysError(f"{predictor.name} returned {type(prediction).__name__}, not a Prediction.")
    return prediction


def write_prediction(prediction: Prediction, out_dir: Path, stem: str = "") -> dict[str, str]:
    """Write maps (CCP4), reflections (MTZ) and tables (TSV) to ``out_dir``; return {name: path}.

    Each file is written atomically; if any write fails, the files already written are removed.
    """
    writable_folder(out_dir)
    prefix = f"{stem}_" if stem else ""
    written: dict[str, str] = {}
    try:
        for name, cmap in prediction.maps.items():
            written[name] = str(io.write_map(cmap, out_dir / f"{prefix}{name}.ccp4"))
        for name, refl in prediction.reflections.items():
            written[name] = str(io.write_mtz(refl.mtz, out_dir / f"{prefix}{name}.mtz"))
        for name, table in prediction.tables.items():
            path = out_dir / f"{prefix}{name}.tsv"
            with io.atomic_path(path) as tmp:
                tmp.write_text(table.to_tsv())
            written[name] = str(path)
    except BaseException:
        for path in written.values():
            Path(path).unlink(missing_ok=True)
        raise
    return written


#: the record a command writes into its output folder (it names the run's files)
RUN_RECORDS = ("result.json", "refine.json", "demo.json", "results.json")


def prepare_output_folder(path: str | Path, overwrite: bool = False) -> Path:
    """Check an output folder before any work, so one folder only ever holds the files of one run.

    A new or empty folder is fine.  A folder with files is refused unless ``overwrite`` is given and the
    folder holds an earlier crysplugins run (one of ``RUN_RECORDS``): its content is then removed, so no
    file of the earlier run is left beside the new ones.  Nothing is created here."""
    p = check_output_folder(path)
    entries = sorted(p.iterdir()) if p.is_dir() else []
    if not entries:
        return p
    names = ", ".join(e.name for e in entries[:4]) + (", ..." if len(entries) > 4 else "")
    if not overwrite:
        raise CrysError(f"The output folder {p} is not empty (it holds {names}); name a new folder, or add "
                        f"--overwrite to replace an earlier run's files.")
    if not any((p / record).is_file() for record in RUN_RECORDS):
        raise CrysError(f"The output folder {p} holds files no crysplugins run wrote ({names}); --overwrite "
                        f"only replaces an earlier run's folder, so name a new folder.")
    for entry in entries:
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    return p


def json_safe(obj: Any) -> Any:
    """``obj`` with every NaN or infinite number as None (JSON has no NaN: ``json.dumps`` would write a bare
    ``NaN`` token that strict readers refuse) and numpy scalars as Python numbers; containers are copied."""
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    return obj


def json_text(obj: Any, indent: int | None = 2) -> str:
    """Strict JSON of ``obj``: non-finite numbers become null, values JSON does not know become strings."""
    return json.dumps(json_safe(obj), indent=indent, default=str, allow_nan=False)


def write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as indented strict JSON (:func:`json_text`), atomically."""
    with io.atomic_path(path) as tmp:
        tmp.write_text(json_text(obj))
