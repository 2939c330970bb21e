"""The tuning sets of this lab note's mask studies and what the studies read off their starting maps.

Sets: ``small`` and ``lowres`` (``data_build/dm_dev_{set}.npz``, built by benchmarks/build_dm_dev_sources.py) and
``dev`` (the dev split of benchmarks/bench_density_modify.py).  Cases are simulated at seed 1, as in every study here.
Run the study scripts from the repository root."""
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

sys.path.insert(0, 'benchmarks')
import bench_density_modify as b  # noqa: E402
from crysplugins.crystal.dm import DMSettings  # noqa: E402
from crysplugins.crystal.dm.engine import engine_grid  # noqa: E402
from crysplugins.crystal.dm.hl import phase_fom_from_hl  # noqa: E402
from crysplugins.crystal.dm.masking import (LocalDeviation, MaskRequest, resample, solvent_mask,  # noqa: E402
                                            symmetrized)

SETS = ('small', 'dev', 'lowres')


def sources(which: str) -> list:
    """The crystals of one tuning set."""
    if which == 'dev':
        return [s for s in b.load_crystals(Path('data_build/dm_bench_sources.npz')) if s.name in b.DEV_SPLIT]
    return b.load_sources(Path(f'data_build/dm_dev_{which}.npz'))


def cases(levels: tuple[float, ...], sets: tuple[str, ...] = SETS):
    """(set, source, case at seed 1) for every crystal of ``sets`` and every mean start error in ``levels``."""
    for which in sets:
        for src in sources(which):
            for level in levels:
                yield which, src, b.make_case(src, level, 1)


@dataclass
class StartingMap:
    """The FOM-weighted starting map of a case on the engine's grid, and the true solvent mask there."""

    shape: tuple[int, int, int]
    rho: np.ndarray
    truth: np.ndarray
    map_on: Callable


def starting_map(src, case) -> StartingMap:
    refl = case.refl
    shape = engine_grid(refl, DMSettings())
    phib, fom = phase_fom_from_hl(case.hl, refl.centric, refl.centric_phase)
    coef = fom * refl.fobs * np.exp(1j * phib)

    def map_on(sh):
        return refl.crystal_map(refl.to_map(coef, tuple(int(x) for x in sh)), name='start')

    return StartingMap(shape, refl.to_map(coef, shape), resample(src.mask, shape) > 0.5, map_on)


def local_rms_mask(case, rho: np.ndarray, extra: float, solvent_fraction: float) -> np.ndarray:
    """Local rms (radius d_min + ``extra`` Å), symmetrized, cut at ``solvent_fraction`` (True = solvent)."""
    refl = case.refl
    score = -LocalDeviation(refl.cell, rho.shape)(rho, refl.d_min + extra, 'rms', 0.0)
    return solvent_mask(symmetrized(score, refl.cell, refl.spacegroup), solvent_fraction)


def unet_mask(unet, case, start: StartingMap, solvent_fraction: float) -> np.ndarray:
    """The U-net's mask of the starting map (the provider's score, symmetrized, cut at ``solvent_fraction``)."""
    refl = case.refl
    u = unet(MaskRequest(cycle=0, map=start.map_on(start.shape), map_on=start.map_on, d_min=refl.d_min,
                         mean_fom=0.5))
    u = resample(np.asarray(u.array if hasattr(u, 'array') else u, dtype=np.float64), start.shape)
    return solvent_mask(symmetrized(u, refl.cell, refl.spacegroup), solvent_fraction)
