"""Registry of training tasks for ``crysplugins train <task>``: one module per task in this package.

Tasks are named here as "module:class" so that nothing is imported until a task is used; other packages
may add entries with :func:`register_task`.  The task contract is in :mod:`crysplugins.training.loop`.

A reccrysformer run whose config names a previous run (``recycling.recycle_from``) is a recycling run:
:func:`task_kind` sends it to the recycling task, and its checkpoints still say "reccrysformer" (it
exports and runs as one).
"""
from __future__ import annotations

import importlib
from functools import partial
from typing import Any, Callable

from crysplugins.errors import CrysError

TASKS: dict[str, str | Callable[[dict], Any]] = {
    "reccrysformer": "crysplugins.training.tasks.reccrysformer:RecCrysFormerTask",
    "recycling": "crysplugins.training.tasks.recycling:RecyclingTask",
    "solvent-unet": "crysplugins.training.tasks.solvent_unet:SolventUNetTask",
    "hand-classifier": "crysplugins.training.tasks.hand_classifier:HandTask",
}


def register_task(name: str, factory: str | Callable[[dict], Any]) -> None:
    """Add (or replace) a task: ``factory`` is a callable or a "module:callable" string."""
    TASKS[name] = factory


def task_kind(name: str, config: dict[str, Any]) -> str:
    """The registry entry that trains ``name`` with ``config``."""
    if name == "reccrysformer" and (config.get("recycling") or {}).get("recycle_from"):
        return "recycling"
    return name


def _factory(name: str) -> Callable[[dict], Any]:
    if name not in TASKS:
        raise CrysError(f"There is no training task '{name}'; known tasks: {', '.join(sorted(TASKS))}.")
    factory = TASKS[name]
    if callable(factory):
        return factory
    module, _, attr = factory.partition(":")
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        raise CrysError(f"The training task '{name}' is not available ({exc.name} is missing).") from None
    return getattr(mod, attr)


def make_task(name: str, config: dict[str, Any]) -> Any:
    """The task object for ``crysplugins train NAME`` with ``config``."""
    return _factory(task_kind(name, config))(config)


def get_task_factory(name: str) -> Callable[[dict], Any]:
    """``config -> task`` for task ``name`` (an unknown name is refused now, not at the call)."""
    _factory(name)
    return partial(make_task, name)


def export_spec_function(kind: str) -> Callable[..., Any]:
    """``export_spec(checkpoints, options)`` of the module that holds task ``kind``."""
    if kind not in TASKS:
        raise CrysError(f"The checkpoint is from the task '{kind}', which this crysplugins cannot export; "
                        f"known tasks: {', '.join(sorted(TASKS))}.")
    factory = _factory(kind)
    module = importlib.import_module(factory.__module__)
    if not hasattr(module, "export_spec"):
        raise CrysError(f"The training task '{kind}' has no exporter.")
    return module.export_spec
