"""Density modification of experimental phases in any space group (numpy + gemmi).

Modules, one idea each: :mod:`.settings` (dataclasses), :mod:`.reflections` (symmetry expansion, maps),
:mod:`.hl` (Hendrickson–Lattman phase probabilities), :mod:`.masking` (local-deviation mask, mask
providers), :mod:`.solvent` (flipping with the γ correction, level adjustment), :mod:`.protein`
(truncation), :mod:`.histogram` (histogram matching), :mod:`.weighting` (σ_A), :mod:`.engine` (the cycles),
:mod:`.result` (their output), :mod:`.ensemble` (several runs averaged).
"""
from crysplugins.crystal.dm.engine import run_dm
from crysplugins.crystal.dm.reflections import ReflectionSet
from crysplugins.crystal.dm.result import DMResult
from crysplugins.crystal.dm.settings import DMSettings

__all__ = ["DMResult", "DMSettings", "ReflectionSet", "run_dm"]
