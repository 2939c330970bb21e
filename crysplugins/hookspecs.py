"""pluggy markers and typed hook specifications of the crysplugins host.

A plugin (a module or object) implements hooks with ``@hookimpl``::

    from crysplugins.hookspecs import hookimpl

    @hookimpl
    def register_predictors(register):
        register(MyPredictor())

Third-party distributions expose such a module under the entry-point group ``crysplugins``; the built-in
plugins are the modules listed in :data:`crysplugins.plugins.BUILTINS` and use the same hooks.
"""
from __future__ import annotations

from typing import Callable

import pluggy

from crysplugins.interface import Predictor, Refiner

PROJECT = "crysplugins"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_predictors(register: Callable[[Predictor], None]) -> None:
    """Register predictors by calling ``register(predictor)`` once per predictor.

    ``predictor`` must satisfy :class:`crysplugins.interface.Predictor`.
    """


@hookspec
def register_refiners(register: Callable[[Refiner], None]) -> None:
    """Register refiners (density modification and the like) by calling ``register(refiner)``.

    ``refiner`` must satisfy :class:`crysplugins.interface.Refiner`: ``name``, ``summary`` and
    ``refine(map, observed, **options)`` returning a :class:`crysplugins.interface.RefineOutcome`.
    """
