"""Several density-modification runs averaged: the output of runs that differ only in the first masks.

From poor phases the outcome of density modification depends on its first cycles: runs whose local-rms
masks start from a different radius end in different places, each partly right.  Their phase
probabilities, averaged, are closer to the truth than any one of them (as averaging the last cycles of one
run is, :class:`~crysplugins.crystal.dm.settings.DMSettings` ``output_average``; as multi-solution
averaging of fragments is).  The output combines the experimental HL coefficients with the mean of the
members' modified-map HL terms; the map and its coefficients (FWT) are the members' mean.

A mask provider (the U-net) is run by the first member only; the others take its score of the same cycle
(:class:`SharedProvider`), so an ensemble costs the provider no more than one run.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from crysplugins.crystal.dm.hl import phase_fom_from_hl
from crysplugins.crystal.dm.masking import MaskProvider, MaskRequest
from crysplugins.crystal.dm.result import DMResult
from crysplugins.interface import CrystalMap


class SharedProvider:
    """A mask provider whose score for each cycle is computed once (by the first member to ask) and handed to
    every later member asking for the same cycle."""

    def __init__(self, provider: MaskProvider) -> None:
        self.provider = provider
        self.scores: dict[int, CrystalMap | np.ndarray] = {}

    def __call__(self, request: MaskRequest) -> CrystalMap | np.ndarray:
        if request.cycle not in self.scores:
            self.scores[request.cycle] = self.provider(request)
        return self.scores[request.cycle]


def combine(members: list[DMResult], hl_exp: np.ndarray) -> DMResult:
    """One :class:`~crysplugins.crystal.dm.result.DMResult` from the members' (same reflections, same grid).

    Phases and FOMs from HL_exp + the mean of the members' HL − HL_exp (no FOM above the highest member's);
    FWT and the map are the members' means; mask and trace are the first member's; ``info["members"]`` holds
    each member's mask radius, final mean FOM and time (s)."""
    first = members[0]
    refl = first.reflections
    n = len(refl.hkl)
    hl = hl_exp[:n] + np.mean([m.hl - hl_exp[:n] for m in members], axis=0)
    phib, fom = phase_fom_from_hl(hl, refl.centric, refl.centric_phase)
    fom = np.minimum(fom, np.max([m.fom for m in members], axis=0))
    mean_map = np.mean([np.asarray(m.map.array, dtype=np.float64) for m in members], axis=0)
    cmap = CrystalMap.from_array(mean_map.astype(np.float32), first.map.cell, first.map.spacegroup,
                                 name=first.map.name, units=first.map.units)
    info = {**first.info, "seconds": round(sum(m.info["seconds"] for m in members), 3),
            "members": [{"radius_extra": m.info.get("radius_extra"), "seconds": m.info["seconds"],
                         "fom": round(float(np.average(m.fom, weights=refl.fobs)), 4)} for m in members]}
    return replace(first, phib=np.degrees(phib), fom=fom, hl=hl, fwt=np.mean([m.fwt for m in members], axis=0),
                   map=cmap, info=info)
