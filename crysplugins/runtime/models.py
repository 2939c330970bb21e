"""Model registry for inference: JSON model cards + ONNX files, checked and cached (no torch).

A model is two files with the same stem: ``<name>.onnx`` and ``<name>.json`` (the *card*: architecture,
training data, normalisation constants, grid, metrics, versions and the ONNX file's sha256).  Models are
looked up in

1. the folder named by the environment variable ``CRYSPLUGINS_MODELS`` (a user's own models; searched
   first, so a user model of the same name wins), then
2. the package's shipped models (``crysplugins.models``, source folder ``models/``).

``load_model(name)`` checks the sha256 of the ONNX file against the card, opens an onnxruntime session
(CPU) once and caches it per (path, mtime).

A model is named, never given as a path: a name with a folder in it is refused, so a card outside every
models folder is never read, and a card's ``onnx`` entry must name a file in the card's own folder.  A user
model that hides a shipped one of the same name is allowed but said (:func:`shadow_notes`, shown by
``crysplugins list`` and ``info``).
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from crysplugins.errors import CrysError

ENV_MODELS = "CRYSPLUGINS_MODELS"
CARD_FORMAT = "crysplugins-model-card-v1"


@dataclass
class ModelCard:
    """A model card (the parsed JSON) and where its files are."""

    name: str
    path: Path            # the card's JSON file
    data: dict[str, Any] = field(repr=False)

    @property
    def onnx_path(self) -> Path:
        """The ONNX file beside the card; a card naming a file elsewhere is refused."""
        value = self.data.get("onnx", f"{self.name}.onnx")
        if not isinstance(value, str) or not _plain_name(value):
            raise CrysError(f"The model card {self.path} names the ONNX file {value!r}, which is not a file "
                            f"in the card's folder.")
        return self.path.parent / value

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def __getitem__(self, key: str) -> Any:
        try:
            return self.data[key]
        except KeyError:
            raise CrysError(f"The model card {self.path} has no '{key}' entry.") from None


def model_dirs() -> list[Path]:
    """Folders searched for models, in order."""
    dirs = []
    env = os.environ.get(ENV_MODELS)
    if env:
        dirs += [Path(p) for p in env.split(os.pathsep) if p]
    try:
        dirs.append(Path(str(resources.files("crysplugins.models"))))
    except ModuleNotFoundError:
        # crysplugins imported from a source checkout without installing it (e.g. `python -m crysplugins.cli`
        # in the repository root): the shipped models are in the checkout's top-level models/ folder.
        checkout_models = Path(__file__).resolve().parents[2] / "models"
        if checkout_models.is_dir():
            dirs.append(checkout_models)
    return dirs


def list_models(task: str | None = None) -> list[ModelCard]:
    """Every model card found (first occurrence of a name wins); optionally only those of ``task``."""
    seen: dict[str, ModelCard] = {}
    for d in model_dirs():
        if not d.is_dir():
            continue
        for p in sorted(d.glob("*.json")):
            try:
                data = json.loads(p.read_text())
            except (OSError, ValueError):
                continue
            if not isinstance(data, dict) or data.get("format") != CARD_FORMAT:
                continue
            name = data.get("name", p.stem)
            if name not in seen and (task is None or data.get("task") == task):
                seen[name] = ModelCard(name, p, data)
    return list(seen.values())


def _plain_name(name: str) -> bool:
    """A file name without any folder part (no separators, not '.' or '..', not absolute, no NUL)."""
    return (bool(name) and name not in (".", "..") and "\0" not in name
            and not any(sep in name for sep in ("/", "\\", os.sep)) and Path(name).name == name)


def _is_card(path: Path) -> bool:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("format") == CARD_FORMAT


def shadow_notes() -> list[str]:
    """One sentence per model name found in more than one models folder: the first one found is used."""
    found: dict[str, list[Path]] = {}
    for d in model_dirs():
        if d.is_dir():
            for p in sorted(d.glob("*.json")):
                if _is_card(p):
                    found.setdefault(p.stem, []).append(p)
    return [f"The model '{name}' is taken from {paths[0]}, which hides the one of the same name in "
            f"{', '.join(str(p.parent) for p in paths[1:])}." for name, paths in found.items() if len(paths) > 1]


def find_card(name: str) -> ModelCard:
    """The card of model ``name`` (CRYSPLUGINS_MODELS first, then the shipped models)."""
    if not isinstance(name, str) or not _plain_name(name) or name.endswith(".json"):
        raise CrysError(f"'{name}' is not a model name; give the name of a model in a models folder "
                        f"(models found: {', '.join(c.name for c in list_models()) or 'none'}).")
    for d in model_dirs():
        p = d / f"{name}.json"
        if p.is_file():
            try:
                data = json.loads(p.read_text())
            except (ValueError, OSError) as exc:
                raise CrysError(f"The model card {p} is not valid JSON ({exc}).") from None
            if not isinstance(data, dict):
                raise CrysError(f"The model card {p} is not a JSON object.")
            return ModelCard(data.get("name", name), p, data)
    known = ", ".join(c.name for c in list_models()) or "none"
    raise CrysError(f"There is no model named '{name}' (models found: {known}).")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


_CACHE: dict[tuple[str, float], Any] = {}
_LOCK = threading.Lock()


def load_model(name: str, threads: int | None = None) -> tuple[Any, ModelCard]:
    """(onnxruntime.InferenceSession, card) for model ``name``; the sha256 is checked on first load."""
    card = find_card(name)
    onnx_path = card.onnx_path
    if not onnx_path.is_file():
        raise CrysError(f"The model file {onnx_path} named by the card {card.path} is missing.")
    key = (str(onnx_path), onnx_path.stat().st_mtime)
    with _LOCK:
        session = _CACHE.get(key)
        if session is None:
            expected = card.get("sha256")
            if expected and sha256_file(onnx_path) != expected:
                raise CrysError(f"The model file {onnx_path} does not match the sha256 in its card "
                                f"(corrupted or replaced); reinstall or re-export the model.")
            import onnxruntime as ort

            opts = ort.SessionOptions()
            n = threads or int(os.environ.get("CRYSPLUGINS_THREADS", "0") or 0)
            if n:
                opts.intra_op_num_threads = n
                opts.inter_op_num_threads = 1
            opts.log_severity_level = 3
            try:
                session = ort.InferenceSession(str(onnx_path), sess_options=opts,
                                               providers=["CPUExecutionProvider"])
            except Exception as exc:
                raise CrysError(f"onnxruntime cannot load {onnx_path} ({str(exc).splitlines()[0][:200]}).") from None
            _CACHE[key] = session
    return session, card


def clear_cache() -> None:
    with _LOCK:
        _CACHE.clear()
