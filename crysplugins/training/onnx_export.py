"""What a task hands the exporter (:class:`ExportSpec`), and the ONNX export and parity check themselves.

Every task exports the same way: torch's dynamo exporter into one self-contained file (the card's
sha256 covers every weight), then onnxruntime against torch on the task's parity inputs; a difference
above :data:`PARITY_TOL` writes nothing.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import onnxruntime as ort
import torch

from crysplugins.errors import CrysError

PARITY_TOL = 1e-4


@dataclass
class ExportOptions:
    """Choices of ``crysplugins export`` that a task may use (grid shapes apply to map models)."""

    shapes: list[tuple[int, int, int]] | None = None
    static: bool = False
    hand_model: str | None = None
    models_dir: Path = Path("models")


@dataclass
class ExportSpec:
    """A model ready for export: ``example`` gives the input names and tracing shapes, ``dynamic_shapes``
    which axes vary (None: the example's shapes only), ``parity`` the inputs checked against torch,
    ``card`` the task's card entries, and ``after_export(session, card)`` entries that need the exported
    model itself (e.g. a calibration)."""

    model: torch.nn.Module
    example: dict[str, torch.Tensor]
    parity: list[dict[str, torch.Tensor]]
    output_name: str
    dynamic_shapes: dict[str, dict[int, Any]] | None = None
    card: dict[str, Any] = field(default_factory=dict)
    after_export: Callable[[Any, dict[str, Any]], dict[str, Any]] | None = None


def export_onnx(spec: ExportSpec, path: Path) -> None:
    """Export ``spec.model`` to ``path`` (one file, dynamo exporter)."""
    kwargs: dict[str, Any] = {"dynamo": True, "input_names": list(spec.example),
                              "output_names": [spec.output_name], "external_data": False}
    if spec.dynamic_shapes is not None:
        # positional, so that input names need not match the forward() argument names
        kwargs["dynamic_shapes"] = tuple(spec.dynamic_shapes.get(k, {}) for k in spec.example)
    with torch.no_grad():
        torch.onnx.export(spec.model, tuple(spec.example.values()), str(path), **kwargs)


def parity(spec: ExportSpec, path: Path) -> dict[str, Any]:
    """max |ONNX - torch| over ``spec.parity``; raises (nothing written) above :data:`PARITY_TOL`."""
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    checks = []
    for inputs in spec.parity:
        with torch.no_grad():
            ref = spec.model(*inputs.values()).float().numpy()
        got = sess.run(None, {k: inputs[k].numpy() for k in names})[0]
        first = next(iter(inputs.values()))
        checks.append({"shape": list(first.shape[2:]), "batch": int(first.shape[0]),
                       "max_abs_diff": float(np.abs(got - ref).max()), "output_std": float(ref.std())})
    worst = max(c["max_abs_diff"] for c in checks)
    if worst > PARITY_TOL:
        raise CrysError(f"The ONNX export differs from torch by {worst:.2e} (> {PARITY_TOL}); nothing written.")
    return {"tolerance": PARITY_TOL, "max_abs_diff": worst, "inputs_checked": len(checks), "checks": checks,
            "dynamic_shapes": spec.dynamic_shapes is not None}


def session(path: Path) -> Any:
    """An onnxruntime session of an exported file (for ``after_export``)."""
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def task_export_spec(task: Any, checkpoints: list[Any], config: dict[str, Any]) -> ExportSpec:
    """The spec of a task object: ``task.export_model(checkpoints)`` (or its model with the one
    checkpoint's weights), ``export_example()`` plus ``parity_examples()``, ``dynamic_shapes()`` (default:
    every axis but the channel axis) and ``export_card(model, checkpoints)`` or ``card()``."""
    if hasattr(task, "export_model"):
        model = task.export_model(checkpoints)
    elif len(checkpoints) == 1:
        model = task.build_model(config)
        try:
            model.load_state_dict(checkpoints[0].model)
        except RuntimeError as exc:
            raise CrysError(f"The weights in {checkpoints[0].path} do not fit the task's model "
                            f"({str(exc).strip().splitlines()[0][:200]}).") from None
        model.eval()
    else:
        raise CrysError(f"A '{task.name}' run exports one checkpoint at a time.")
    example = task.export_example()
    if not isinstance(example, dict):
        raise CrysError("The task's export_example() must return a dict of named tensors.")
    if hasattr(task, "dynamic_shapes"):
        dynamic = task.dynamic_shapes()
    else:
        dynamic = {k: {i: torch.export.Dim(f"{k}_{i}", min=1, max=4096) for i in range(v.dim()) if i != 1}
                   for k, v in example.items()}
    card = task.export_card(model, checkpoints) if hasattr(task, "export_card") else {
        "config": config, **getattr(task, "card", dict)()}
    return ExportSpec(model=model, example=example, output_name=getattr(task, "output_name", "output"),
                      parity=[example] + list(getattr(task, "parity_examples", list)()), dynamic_shapes=dynamic,
                      card=card, after_export=getattr(task, "after_export", None))
