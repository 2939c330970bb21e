"""The result of density modification (:func:`crysplugins.crystal.dm.engine.run_dm`)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from crysplugins.crystal.dm.reflections import ReflectionSet
from crysplugins.interface import CrystalMap


@dataclass
class DMResult:
    """Output of :func:`~crysplugins.crystal.dm.engine.run_dm`: best phases ``phib`` (degrees), figures of merit ``fom`` (after a flattened
    last cycle no higher than the last flipping cycle's: a flattened map's σ_A is inflated), combined HL
    coefficients ``hl`` (n, 4), weighted map coefficients ``fwt`` (complex), all for the n measured reflections;
    the final map (engine grid; with the unmeasured reflections' σ_A·F_mod terms when those were filled),
    the final solvent mask (True = solvent), the per-cycle ``trace`` and ``info``."""

    reflections: ReflectionSet
    phib: np.ndarray
    fom: np.ndarray
    hl: np.ndarray
    fwt: np.ndarray
    map: CrystalMap
    mask: np.ndarray
    trace: list[dict[str, float]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
