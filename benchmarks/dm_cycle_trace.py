"""Diagnostic: the phase error after every density-modification cycle, with the LV mask and with the true mask.

For crystals of a PhasingSource cache (default: the packed tuning set of ``build_dm_dev_sources.py``) at one
start error (seed 1, as ``bench_density_modify.py``), prints the |F_obs|-weighted phase error (degrees) every
4th cycle and at the end, the last flipping cycle's flip factor k and the final mean FOM and σ_A.  The
true-mask run feeds the model's solvent mask as a provider with full weight (what a perfect mask would give).

    OMP_NUM_THREADS=1 python benchmarks/dm_cycle_trace.py 1BTH-dev,1ID5-dev [--level 50] [--set KEY=VALUE ...]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from bench_density_modify import ROOT, _override, make_case, phase_error
from crysplugins.crystal.dm import DMSettings, run_dm
from crysplugins.datasets.solvent_windows import load_sources


def trace(case, settings: DMSettings, provider=None) -> tuple[list[float], dict]:
    """Phase error after every cycle and the result's last trace row."""
    errs: list[float] = []

    def on_cycle(_cycle: int, phib: np.ndarray, _fom: np.ndarray) -> None:
        errs.append(phase_error(case.refl.fobs, np.angle(case.f_true), phib))

    res = run_dm(case.refl, case.hl, settings, solvent_fraction=case.solvent_fraction, mask_provider=provider,
                 on_cycle=on_cycle)
    k_flips = [row["k_flip"] for row in res.trace if row["k_flip"] != 0.0]
    return errs, {"k_last_flip": k_flips[-1] if k_flips else 0.0, "fom": res.trace[-1]["fom"], "sigmaa": res.trace[-1]["sigmaa"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("crystals", help="comma-separated names")
    ap.add_argument("--sources", default=str(ROOT / "data_build" / "dm_dev_lowres.npz"))
    ap.add_argument("--level", type=float, default=50.0)
    ap.add_argument("--set", nargs="*", default=[], help="engine settings overrides")
    args = ap.parse_args()
    want = set(args.crystals.split(","))
    for src in (s for s in load_sources(Path(args.sources)) if s.name in want):
        case = make_case(src, args.level, 1)
        for mask in ("lv", "true"):
            settings = DMSettings()
            for kv in args.set:
                _override(settings, kv)
            provider = None
            if mask == "true":
                settings.mask.provider_weight, settings.mask.provider_weight_final = 1.0, None
                provider = lambda _req, src=src: src.mask_map()  # noqa: E731
            errs, last = trace(case, settings, provider)
            print(f"{src.name} {mask} mask: start {case.start_error:.1f}, every 4th cycle "
                  f"{' '.join(f'{e:.1f}' for e in errs[::4])}, final {errs[-1]:.2f}; last flip k {last['k_last_flip']:.3f}, "
                  f"FOM {last['fom']:.3f}, σA {last['sigmaa']:.3f}", flush=True)


if __name__ == "__main__":
    main()
