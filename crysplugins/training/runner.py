"""A training run as a model runner: its exported ONNX file, or its torch checkpoint while in training.

:class:`TorchRunner` takes and returns what :class:`crysplugins.runtime.runner.OnnxRunner` does, so the
template builder (``crysplugins dataset templates``) and the hand-model fit run an exported model and an
un-exported run alike.  torch is imported only for a checkpoint: an ONNX model needs none.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from crysplugins.errors import CrysError
from crysplugins.runtime.runner import OnnxRunner


class TorchRunner:
    """Runs a ``torch.nn.Module`` taking (x, sequence) and returning (B, 1, N1, N2, N3)."""

    def __init__(self, model: Any, identity: str, in_channels: int, needs_sequence: bool = True) -> None:
        self.model = model.eval()
        self.identity = identity
        self.in_channels = in_channels
        self.needs_sequence = needs_sequence

    def __call__(self, x: np.ndarray, sequence: np.ndarray | None) -> np.ndarray:
        """Maps (B, C, N1, N2, N3) and residue indices (B, R) -> predictions (B, N1, N2, N3) in float32."""
        import torch

        with torch.no_grad():
            xt = torch.as_tensor(np.ascontiguousarray(x, dtype=np.float32))
            if self.needs_sequence and sequence is not None:
                y = self.model(xt, torch.as_tensor(np.asarray(sequence, dtype=np.int64)))
            else:
                y = self.model(xt)
        return y.float().numpy().reshape(x.shape[0], *x.shape[2:])


def load_runner(run_dir: str | Path | None, onnx: str | Path | None = None, threads: int = 1) -> Any:
    """A model runner for ``run_dir`` (a training run folder) or an explicit ONNX file.

    Order: ``onnx`` if given; else a single ``*.onnx`` in the run folder; else the run's torch checkpoint.
    """
    if onnx is not None:
        if not Path(onnx).is_file():
            raise CrysError(f"The ONNX model {onnx} does not exist.")
        return OnnxRunner.from_path(onnx, threads)
    if run_dir is None:
        raise CrysError("Give a training run folder or --onnx.")
    run = Path(run_dir)
    if not run.is_dir():
        raise CrysError(f"The run folder {run} does not exist.")
    onnx_files = sorted(run.glob("*.onnx"))
    if len(onnx_files) == 1:
        return OnnxRunner.from_path(onnx_files[0], threads)
    try:
        import torch
    except ImportError:
        raise CrysError(f"{run} has no single .onnx file and torch is not installed to read its checkpoint "
                        "(export it or pass --onnx).") from None
    from crysplugins.training.tasks.reccrysformer import load_run_model  # needs torch

    torch.set_num_threads(threads)
    model, config, identity = load_run_model(run)
    return TorchRunner(model, identity, int(config.get("in_channels", 1)), bool(config.get("partial", True)))
