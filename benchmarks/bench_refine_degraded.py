"""The density-modification refiner on deliberately degraded phases of the two test fragments.

Uses only repository files (``tests/data/frag2.pdb``, ``frag5.pdb``; nothing from ../shared).  For each
fragment, resolution and noise level, three seeds: start = true phases + Gaussian noise (σ = noise, degrees),
exact |F_obs|, 200 cycles of ``crysplugins.crystal.refine.density_modify``, solvent fraction from the
sequence.  Reports the start error, the refined error as placed (``keep_origin``) and after the best
origin shift and hand (``crysplugins.crystal.origin.search_origin_hand``), the score range and seconds.
Writes ``benchmarks/out/refine_degraded.json`` and prints a Markdown table.

    OMP_NUM_THREADS=1 python benchmarks/bench_refine_degraded.py
"""
from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import gemmi
import numpy as np

from crysplugins.crystal import metrics, refine
from crysplugins.crystal.origin import search_origin_hand
from figure_output import write_figure

REPO = Path(__file__).resolve().parents[1]


def load_fixture_maker():
    """The test suite's fixture builder (structure factors of a PDB file by gemmi), loaded by path."""
    spec = importlib.util.spec_from_file_location("fx", REPO / "tests" / "data" / "make_classical_fixtures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def one_setting(st: gemmi.Structure, hkl: np.ndarray, f_c: np.ndarray, noise: float) -> dict:
    """Mean over three seeds of one fragment / resolution / noise level."""
    f, phi = np.abs(f_c), np.angle(f_c, deg=True)
    seq = gemmi.one_letter_code([r.name for r in st[0][0]])
    rows = []
    for seed in range(3):
        start = phi + np.random.default_rng(seed).normal(0, noise, len(phi))
        t0 = time.perf_counter()
        r = refine.density_modify(None, (st.cell, hkl, f), phases=start, sequence=seq, cycles=200)
        dt = time.perf_counter() - t0
        rows.append((metrics.phase_error(hkl, phi, start, f), metrics.phase_error(hkl, phi, r.phases, f),
                     search_origin_hand(hkl, f, phi, r.phases).phase_error, r.score, dt))
    e = np.array(rows)
    return {"residues": len(seq), "noise_deg": noise, "start_error": round(e[:, 0].mean(), 1),
            "refined_as_placed": round(e[:, 1].mean(), 1), "refined_best_origin": round(e[:, 2].mean(), 1),
            "score_min": round(e[:, 3].min(), 4), "score_max": round(e[:, 3].max(), 4),
            "seconds": round(e[:, 4].mean(), 2)}


def main() -> None:
    fx = load_fixture_maker()
    t0 = time.perf_counter()
    print("| fragment | d_min (Å) | noise σ (°) | start error (°) | refined, as placed (°) | refined, best origin (°) "
          "| score (CC) | seconds |")
    print("|---|---|---|---|---|---|---|---|")
    rows = []
    for name in ("frag2", "frag5"):
        for d_min in (1.5, 2.0):
            st, hkl, f_c = fx.structure_factors(REPO / "tests" / "data" / f"{name}.pdb", d_min)
            for noise in (40, 60, 75):
                row = {"fragment": name, "d_min": d_min, **one_setting(st, hkl, f_c, noise)}
                rows.append(row)
                print(f"| {name} ({row['residues']} res) | {d_min} | {noise} | {row['start_error']} | "
                      f"{row['refined_as_placed']} | {row['refined_best_origin']} | "
                      f"{row['score_min']:.4f}–{row['score_max']:.4f} | {row['seconds']:.2f} |", flush=True)
    write_figure("refine_degraded", {"rows": rows}, time.perf_counter() - t0)


if __name__ == "__main__":
    main()
