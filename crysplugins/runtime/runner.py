"""The one onnxruntime session wrapper: every exported model (RecCrysFormer, recycled model, hand classifier,
solvent U-net) runs through :class:`OnnxRunner`, so feeding, output and the error a user sees are the same.

No torch: the models run on the CPU in onnxruntime.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from crysplugins.errors import CrysError
from crysplugins.runtime.models import ModelCard, load_model, sha256_file


class OnnxRunner:
    """An onnxruntime session and what its inputs are.

    Inputs are recognised by rank: the 5-D float input is the map input (B, C, N1, N2, N3) with C
    ``in_channels``; a 2-D integer input is the residue sequence (B, R).  ``identity`` names the model
    file and its sha256 prefix (what a template set records as the model that made it).
    """

    def __init__(self, session: Any, name: str, identity: str | None = None) -> None:
        self.session = session
        self.name = name
        self.identity = identity or name
        self.input_names = [i.name for i in session.get_inputs()]
        self.input_shapes = {i.name: list(i.shape) for i in session.get_inputs()}
        self.map_input: str | None = None
        self.sequence_input: str | None = None
        self.in_channels = 1
        for inp in session.get_inputs():
            if len(inp.shape) == 5:
                self.map_input = inp.name
                if isinstance(inp.shape[1], int):
                    self.in_channels = inp.shape[1]
            elif len(inp.shape) == 2:
                self.sequence_input = inp.name

    @classmethod
    def from_path(cls, path: str | Path, threads: int = 1) -> "OnnxRunner":
        """A runner for an ONNX file outside the model registry (a training run's export)."""
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        path = Path(path)
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        runner = cls(session, path.stem, f"onnx:{path.name}:{sha256_file(path)[:16]}")
        if runner.map_input is None:
            raise CrysError(f"The ONNX model {path} has no 5-D map input.")
        return runner

    @classmethod
    def from_model(cls, name: str, threads: int | None = None) -> tuple["OnnxRunner", ModelCard]:
        """(runner, card) of a model in the registry (:func:`crysplugins.runtime.models.load_model`)."""
        session, card = load_model(name, threads=threads)
        return cls(session, card.name), card

    def run(self, feeds: Mapping[str, np.ndarray]) -> np.ndarray:
        """The model's first output for ``feeds`` (extra feeds the model does not take are left out)."""
        missing = [k for k in self.input_names if k not in feeds]
        if missing:
            raise CrysError(f"The model {self.name} needs the input(s) {', '.join(missing)}.")
        try:
            return self.session.run(None, {k: feeds[k] for k in self.input_names})[0]
        except Exception as exc:
            grid = next((tuple(np.shape(v)[2:]) for v in feeds.values() if np.ndim(v) == 5), None)
            where = f" on a {grid} grid" if grid else ""
            raise CrysError(f"The model {self.name} could not run{where} "
                            f"({str(exc).splitlines()[0][:160]}).") from None

    def __call__(self, x: np.ndarray, sequence: np.ndarray | None) -> np.ndarray:
        """Maps (B, C, N1, N2, N3) and residue indices (B, R) -> predictions (B, N1, N2, N3) in float32."""
        feeds: dict[str, np.ndarray] = {str(self.map_input): np.ascontiguousarray(x, dtype=np.float32)}
        if self.sequence_input is not None:
            if sequence is None:
                raise CrysError("This model needs the residue sequence.")
            feeds[self.sequence_input] = np.ascontiguousarray(sequence, dtype=np.int64)
        out = self.run(feeds)
        return np.asarray(out, dtype=np.float32).reshape(x.shape[0], *x.shape[2:])
