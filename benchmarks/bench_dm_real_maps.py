"""Real data side by side: 1RX2 and 1RX4 measured amplitudes, simulated starting phases, ``density-modify``.

For each crystal (``../shared/corpus/diffraction``: measured FP and the deposited model) the starting phases
are simulated at a 50° mean error exactly as ``bench_density_modify.py`` does (von Mises errors whose κ falls
with resolution, FOM = I1/I0(κ), centric 0/180° flips; seed 1).  The starting PHIB/FOM go into an MTZ with
the measured FP/SIGFP and through ``crysplugins density-modify --mask unet`` (the command, in-process), with
the solvent fraction of the model's van der Waals mask.  Scores: |F_obs|-weighted mean phase error against
the model's phases (protein + flat bulk solvent, gemmi) of the starting phases and of the returned PHIB, and
the correlation of the starting map (m|F|e^{iφ}) and of the returned FWT map with the model-phased map
|F_obs|e^{iφ_model} over the whole cell.

Writes ``benchmarks/out/dm_real_maps.json`` and ``docs/screenshots/dm_1rx2_1rx4.png`` (one section per
crystal: starting map, our density-modified map, cctbx-dm's from the same input (``density-modify --refiner
cctbx-dm``; ``--no-cctbx`` leaves it out), model-phased map, each in σ units).

    OMP_NUM_THREADS=1 python benchmarks/bench_dm_real_maps.py [--level 50] [--seed 1]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import gemmi
import numpy as np

from bench_density_modify import CORPUS, ROOT, Case, make_case, phase_error
from crysplugins.cli import main as cli_main
from crysplugins.crystal.dm import ReflectionSet
from crysplugins.crystal.io import make_mtz
from crysplugins.datasets.phasing import prepare_source
from figure_output import write_figure

PNG = ROOT / "docs" / "screenshots" / "dm_1rx2_1rx4.png"


def real_case(name: str, level: float, seed: int) -> Case:
    """Simulated phasing of ``name`` (1rx2/1rx4) with its measured amplitudes."""
    mtz = gemmi.read_mtz_file(str(CORPUS / "diffraction" / f"{name}_phases.mtz"))
    st = gemmi.read_structure(str(CORPUS / "diffraction" / f"{name}.pdb"))
    st.setup_entities()
    src = prepare_source(st, float(mtz.resolution_high()), name=f"{name.upper()}-real", f_obs_mtz=mtz)
    return make_case(src, level, seed)


def run_command(case: Case, workdir: Path, extra: tuple[str, ...] = ()) -> tuple[np.ndarray, np.ndarray, float]:
    """(PHIB radians, FWT complex) at ``case.refl.hkl`` and seconds, from ``crysplugins density-modify``
    (``extra``: more options, e.g. ``--refiner cctbx-dm``)."""
    from crysplugins.crystal.dm.hl import phase_fom_from_hl

    r = case.refl
    phi, fom = phase_fom_from_hl(case.hl, r.centric, r.centric_phase)
    make_mtz(r.cell, r.spacegroup, r.hkl, {"FP": ("F", r.fobs), "SIGFP": ("Q", r.sigf),
                                            "PHIB": ("P", np.degrees(phi)), "FOM": ("W", fom)}
             ).write_to_file(str(workdir / "start.mtz"))
    t0 = time.perf_counter()
    code = cli_main(["density-modify", "--reflections", str(workdir / "start.mtz"), "--mask", "unet",
                     "--solvent-fraction", f"{case.solvent_fraction:.4f}", "--out", str(workdir / "out"), *extra])
    secs = time.perf_counter() - t0
    if code != 0:
        raise SystemExit(f"density-modify failed on {case.name}")
    mtz = gemmi.read_mtz_file(str(workdir / "out" / "density_modified.mtz"))
    out = ReflectionSet(mtz.cell, mtz.spacegroup, np.asarray(mtz.make_miller_array()),
                        np.asarray(mtz.column_with_label("FP")), np.asarray(mtz.column_with_label("SIGFP")))
    col = lambda label: np.asarray(mtz.column_with_label(label), dtype=np.float64)  # noqa: E731
    phib = out.values_at(np.exp(1j * np.radians(col("PHIB"))), r.hkl)
    fwt = out.values_at(col("FWT") * np.exp(1j * np.radians(col("PHWT"))), r.hkl)
    return np.angle(phib), np.nan_to_num(fwt), secs


def sigma_scaled(rho: np.ndarray) -> np.ndarray:
    return (rho - rho.mean()) / rho.std()


def maps_and_scores(case: Case, phib: np.ndarray, fwt: np.ndarray, peer: tuple[np.ndarray, np.ndarray] | None
                    ) -> tuple[dict, dict]:
    """The whole-cell maps (σ units) and the phase errors / map correlations of one crystal; ``peer``:
    (PHIB, FWT) of cctbx-dm, shown beside ours when given."""
    from crysplugins.crystal.dm.hl import phase_fom_from_hl

    r = case.refl
    phi0, fom0 = phase_fom_from_hl(case.hl, r.centric, r.centric_phase)
    shape = r.grid_shape(3.0)
    maps = {"start": r.to_map(r.fobs * fom0 * np.exp(1j * phi0), shape),
            "density-modified": r.to_map(fwt, shape),
            **({"cctbx-dm": r.to_map(peer[1], shape)} if peer is not None else {}),
            "model-phased": r.to_map(r.fobs * np.exp(1j * np.angle(case.f_true)), shape)}
    maps = {k: sigma_scaled(v) for k, v in maps.items()}
    cc = lambda k: float(np.corrcoef(maps[k].ravel(), maps["model-phased"].ravel())[0, 1])  # noqa: E731
    ok = np.isfinite(phib)
    scores = {"start_error_deg": round(phase_error(r.fobs, np.angle(case.f_true), phi0), 2),
              "final_error_deg": round(phase_error(r.fobs[ok], np.angle(case.f_true[ok]), phib[ok]), 2),
              "map_cc_start": round(cc("start"), 3), "map_cc_final": round(cc("density-modified"), 3),
              "reflections": int(len(r.hkl)), "d_min": round(r.d_min, 2),
              "solvent_fraction": round(case.solvent_fraction, 3)}
    if peer is not None:
        ok = np.isfinite(peer[0])
        scores["cctbx_error_deg"] = round(phase_error(r.fobs[ok], np.angle(case.f_true[ok]), peer[0][ok]), 2)
        scores["map_cc_cctbx"] = round(cc("cctbx-dm"), 3)
    return maps, scores


def plot(panels: list[tuple[str, dict, dict]], path: Path) -> None:
    """One z-section (middle of the cell) per crystal: start | density-modified | (cctbx-dm) | model-phased."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_col = len(panels[0][1])
    fig, axes = plt.subplots(len(panels), n_col, figsize=(3.2 * n_col, 3.3 * len(panels)))
    for row, (name, maps, sc) in zip(np.atleast_2d(axes), panels):
        titles = {"start": f"start: {sc['start_error_deg']:.1f}°, CC {sc['map_cc_start']:.2f}",
                  "density-modified": f"density-modify: {sc['final_error_deg']:.1f}°, CC {sc['map_cc_final']:.2f}",
                  "model-phased": "model phases, measured |F|"}
        if "cctbx-dm" in maps:
            titles = {**{k: titles[k] for k in ("start", "density-modified")},
                      "cctbx-dm": f"cctbx-dm: {sc['cctbx_error_deg']:.1f}°, CC {sc['map_cc_cctbx']:.2f}",
                      "model-phased": titles["model-phased"]}
        for ax, key in zip(row, titles):
            sec = maps[key][:, :, maps[key].shape[2] // 2].T
            ax.imshow(np.clip(sec, -1.0, 3.0), origin="lower", cmap="gray_r", vmin=-1.0, vmax=3.0,
                      interpolation="bilinear")
            ax.set_title(f"{name} {titles[key]}", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle("z = c/2 sections, σ units clipped to [−1, 3]; phase errors |F|-weighted vs the model", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=62)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--level", type=float, default=50.0, help="mean starting phase error (degrees)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-cctbx", action="store_true", help="leave out the cctbx-dm column (cctbx-base missing)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    rows, panels = [], []
    for name in ("1rx2", "1rx4"):
        case = real_case(name, args.level, args.seed)
        with tempfile.TemporaryDirectory() as tmp:
            phib, fwt, secs = run_command(case, Path(tmp))
        peer, peer_secs = None, None
        if not args.no_cctbx:
            with tempfile.TemporaryDirectory() as tmp:
                phib_c, fwt_c, peer_secs = run_command(case, Path(tmp), ("--refiner", "cctbx-dm"))
                peer = (phib_c, fwt_c)
        maps, scores = maps_and_scores(case, phib, fwt, peer)
        rows.append({"crystal": case.name, "level": args.level, "seed": args.seed, **scores,
                     "seconds": round(secs, 1), "cctbx_seconds": None if peer_secs is None else round(peer_secs, 1)})
        panels.append((name.upper(), maps, scores))
        print(rows[-1], flush=True)
    plot(panels, PNG)
    write_figure("dm_real_maps", {"mask": "unet", "png": str(PNG.relative_to(ROOT)), "crystals": rows},
                 time.perf_counter() - t0)


if __name__ == "__main__":
    main()
