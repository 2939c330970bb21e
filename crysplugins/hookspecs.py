"""pluggy markers and hook specifications of the crysplugins host.

A plugin (a module or object) implements hooks with ``@hookimpl``::

    from crysplugins.hookspecs import hookimpl

    @hookimpl
    def register_predictors(register):
        register(MyPredictor())

Third-party distributions expose such a module under the entry-point group ``crysplugins``.
"""
from __future__ import annotations

import pluggy

PROJECT = "crysplugins"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_predictors(register):  # type: ignore[no-untyped-def]
    """Register predictors by calling ``register(predictor)`` once per predictor.

    ``predictor`` must satisfy :class:`crysplugins.interface.Predictor`.
    """


@hookspec
def register_refiners(register):  # type: ignore[no-untyped-def]
    """Register density-modification refiners by calling ``register(refiner)``.

    A refiner has ``name``, ``summary`` and ``refine(map, reflections, **options) -> RefineResult``
    (see :mod:`crysplugins.crystal.refine`).
    """
