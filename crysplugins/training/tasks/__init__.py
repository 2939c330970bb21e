"""Registry of training tasks for ``crysplugins train <task>``.

A task module provides ``make_task(config: dict) -> task`` (the task contract is in
``crysplugins/training/loop.py`` and docs/CONTRACTS.md).  Tasks are named here as "module:function" so
that nothing is imported until a task is used; other modules may add entries with :func:`register_task`.
"""
from __future__ import annotations

import importlib
from typing import Any, Callable

TASKS: dict[str, str | Callable[[dict], Any]] = {
    "reccrysformer": "crysplugins.training.tasks.reccrysformer:make_task",
    "solvent-unet": "crysplugins.training.solvent_task:make_task",
    "hand-classifier": "crysplugins.training.hand_task:make_task",
}


def register_task(name: str, factory: str | Callable[[dict], Any]) -> None:
    """Add (or replace) a task: ``factory`` is a callable or a "module:function" string."""
    TASKS[name] = factory


def get_task_factory(name: str) -> Callable[[dict], Any]:
    from crysplugins.errors import CrysError

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
