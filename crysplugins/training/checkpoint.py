"""Training checkpoints: tensors in a torch file read with ``weights_only=True``, everything else as JSON.

``RUN_DIR/checkpoint.pt`` holds only tensors, numbers and strings: ``model`` (state dict), ``optimizer``,
``scaler`` (state dicts or None), ``rng_torch`` (the CPU generator state) and ``meta_json``, the run's
metadata as JSON text (format, step/epoch state, config, task, task state, model config, the Python and
numpy generator states).  Nothing in it is unpickled as an object, so a crafted file cannot run code: torch
refuses it.  The metadata travels inside the same file so that one ``os.replace`` keeps weights and
metadata consistent after a kill; ``RUN_DIR/checkpoint.json`` is a copy for readers without torch.

Checkpoints of older crysplugins versions pickled numpy objects and are refused; a file you trust is
converted with ``python -m crysplugins.training.checkpoint OLD.pt [NEW.pt]``.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from crysplugins.crystal.io import atomic_path
from crysplugins.errors import CrysError

FORMAT = "crysplugins-checkpoint-v2"
FILENAME = "checkpoint.pt"


@dataclass
class Checkpoint:
    """A loaded checkpoint: ``model`` weights, optional optimizer/scaler states and the JSON ``meta``."""

    model: dict[str, torch.Tensor]
    meta: dict[str, Any] = field(default_factory=dict)
    optimizer: dict[str, Any] | None = None
    scaler: dict[str, Any] | None = None
    rng_torch: torch.Tensor | None = None
    path: Path | None = None

    @property
    def config(self) -> dict[str, Any]:
        return self.meta.get("config") or {}

    @property
    def task(self) -> str | None:
        return self.meta.get("task") or self.config.get("task")

    @property
    def state(self) -> dict[str, Any]:
        return self.meta.get("state") or {}

    @property
    def task_state(self) -> dict[str, Any]:
        return self.meta.get("task_state") or {}

    @property
    def model_config(self) -> dict[str, Any] | None:
        return self.meta.get("model_config")


def checkpoint_path(source: str | os.PathLike) -> Path:
    """``source`` itself, or ``source/checkpoint.pt`` when it is a run folder."""
    path = Path(source)
    return path / FILENAME if path.is_dir() else path


def rng_state() -> dict[str, Any]:
    """The Python and numpy generator states as JSON-able lists (torch's goes in the tensor file)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {"numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
            "python": [version, list(internal), gauss_next]}


def restore_rng(ckpt: Checkpoint) -> None:
    """Put every generator back where the checkpoint left it."""
    rng = ckpt.meta.get("rng") or {}
    if ckpt.rng_torch is not None:
        torch.set_rng_state(ckpt.rng_torch)
    if rng.get("numpy"):
        name, keys, pos, has_gauss, cached = rng["numpy"]
        np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    if rng.get("python"):
        version, internal, gauss_next = rng["python"]
        random.setstate((version, tuple(internal), gauss_next))


def save_checkpoint(path: str | os.PathLike, model: dict[str, torch.Tensor], meta: dict[str, Any],
                    optimizer: dict[str, Any] | None = None, scaler: dict[str, Any] | None = None,
                    rng_torch: torch.Tensor | None = None) -> Path:
    """Write a checkpoint atomically (fsynced before it replaces the old one) plus its JSON copy."""
    path = Path(path)
    meta = {"format": FORMAT, **meta}
    text = json.dumps(meta, default=str)
    payload = {"model": model, "optimizer": optimizer, "scaler": scaler, "rng_torch": rng_torch,
               "meta_json": text}
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            torch.save(payload, fh)
            fh.flush()
            os.fsync(fh.fileno())
    _fsync_dir(path.parent)
    with atomic_path(path.with_suffix(".json")) as tmp:
        Path(tmp).write_text(json.dumps(meta, indent=1, default=str) + "\n")
    return path


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (POSIX; a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load_checkpoint(source: str | os.PathLike, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Read a checkpoint file or run folder as weights only; anything else is refused in one sentence."""
    path = checkpoint_path(source)
    if not path.is_file():
        raise CrysError(f"There is no checkpoint at {path}.")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for truncated, foreign or unsafe files
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise CrysError(f"{path} is not a readable crysplugins checkpoint: it is corrupt, or an older "
                        f"checkpoint holding pickled objects ({reason}); convert a file you trust with "
                        "'python -m crysplugins.training.checkpoint'.") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("model"), dict):
        raise CrysError(f"{path} is not a crysplugins training checkpoint (it holds no model weights).")
    try:
        meta = json.loads(payload.get("meta_json") or "{}")
    except ValueError:
        raise CrysError(f"{path} is a damaged checkpoint (its metadata is not valid JSON).") from None
    if meta.get("format") != FORMAT:
        raise CrysError(f"{path} is not a {FORMAT} checkpoint.")
    return Checkpoint(model=payload["model"], meta=meta, optimizer=payload.get("optimizer"),
                      scaler=payload.get("scaler"), rng_torch=payload.get("rng_torch"), path=path)


def load_weights(model: torch.nn.Module, ckpt: Checkpoint) -> None:
    """Copy the checkpoint's weights into ``model``; a shape or name mismatch is one sentence."""
    try:
        model.load_state_dict(ckpt.model)
    except RuntimeError as exc:
        raise CrysError(f"The weights in {ckpt.path} do not fit this model "
                        f"({str(exc).strip().splitlines()[0][:200]}).") from None


def convert_legacy(old: str | os.PathLike, new: str | os.PathLike, task: str | None = None) -> Path:
    """Rewrite a checkpoint of an older crysplugins (a pickle) in this format.

    It unpickles ``old`` with ``weights_only=False``, which runs any code the file holds: only for files
    you made yourself.  ``task`` names the training task when the file does not (the solvent U-net's
    former benchmark loop did not record it).
    """
    saved = torch.load(checkpoint_path(old), map_location="cpu", weights_only=False)
    if not isinstance(saved, dict) or "model" not in saved:
        raise CrysError(f"{old} holds no model weights.")
    rng = saved.get("rng") or {}
    meta: dict[str, Any] = {k: saved.get(k) for k in ("state", "config", "task_state", "model_config")}
    meta["task"] = task or saved.get("task") or (saved.get("config") or {}).get("task")
    if rng.get("numpy") is not None:
        name, keys, pos, has_gauss, cached = rng["numpy"]
        meta["rng"] = {"numpy": [name, np.asarray(keys).tolist(), int(pos), int(has_gauss), float(cached)]}
        if rng.get("python") is not None:
            version, internal, gauss_next = rng["python"]
            meta["rng"]["python"] = [version, list(internal), gauss_next]
    optimizer = saved.get("optimizer", saved.get("opt"))
    return save_checkpoint(new, saved["model"], meta, optimizer=optimizer, scaler=saved.get("scaler"),
                           rng_torch=rng.get("torch"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m crysplugins.training.checkpoint",
                                 description="Convert a checkpoint written by an older crysplugins (runs the "
                                             "file's pickle: only for files you trust).")
    ap.add_argument("old")
    ap.add_argument("new", nargs="?", help="output file (default: OLD in place, the original kept as .pt.orig)")
    ap.add_argument("--task", help="the training task, when the old file does not say (e.g. solvent-unet)")
    args = ap.parse_args(argv)
    old = checkpoint_path(args.old)
    new = Path(args.new) if args.new else old
    source = old.with_suffix(".pt.orig") if new == old else old
    try:
        if source != old:
            shutil.copy2(old, source)
        print(convert_legacy(source, new, args.task))
    except Exception as exc:  # a foreign file can fail to unpickle in many ways: one sentence
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        print(f"error: {old} could not be converted ({reason}).", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
