"""Density modification on real data (1RX2, 1RX4) with the U-net mask against local-variance masks.

Reads ``../shared/corpus/diffraction`` (1RX2 at 1.8 Å and 1RX4 at 2.2 Å, P 21 21 21, observed FP, and the
deposited models).  Starting phases are the model's phases with simulated errors (``--phase-error``, mean,
degrees); the starting map is FOM-weighted.  ``crysplugins.crystal.refine.density_modify`` then runs three
ways at the same (Matthews) solvent fraction: with the U-net mask fixed, with the local-variance mask fixed,
and with the refiner's own local-variance mask recomputed every cycle; also at the eq. 2 fraction when it
differs.  ``--weighting sigmaa`` runs it with FOM / σ_A weighting and phase combination, the starting FOMs
read off the FOM-weighted map.  Score: |F|-weighted mean phase error against the model's phases, before
and after.  Writes ``benchmarks/out/solvent_dm.json``.

    OMP_NUM_THREADS=1 CRYSPLUGINS_THREADS=1 python benchmarks/bench_solvent_dm.py \\
        --phase-error 45 --cycles 20 --mode flip --weighting sigmaa
"""
from __future__ import annotations

import argparse
import time

import gemmi
import numpy as np

from bench_solvent import CORPUS, composition, matthews_candidates, sym_prob
from crysplugins.crystal.masks import local_variance_mask, mask_scores, threshold_fraction
from crysplugins.crystal.metrics import phase_error
from crysplugins.crystal.refine import density_modify
from crysplugins.crystal.solvent_content_combination import LogitCutoffDistribution, combine
from crysplugins.datasets.phasing import phasing_map, prepare_source, simulate_phasing
from crysplugins.interface import CrystalMap, Reflections
from crysplugins.runtime.solvent_unet import load_solvent_model
from figure_output import write_figure

CRYSTALS = (("1RX2", "1rx2_phases.mtz", "1rx2.pdb"), ("1RX4", "1rx4_phases.mtz", "1rx4.pdb"))


def phases_at(arr: np.ndarray, hkl: np.ndarray) -> np.ndarray:
    """Phases (degrees) of a map's Fourier coefficients at ``hkl`` (crystallographic sign convention)."""
    ft = np.conj(np.fft.fftn(arr))
    n = arr.shape
    return np.degrees(np.angle(ft[hkl[:, 0] % n[0], hkl[:, 1] % n[1], hkl[:, 2] % n[2]]))


def true_map(src) -> np.ndarray:
    """The error-free model map on the benchmark's grid (reference phases at the refiner's reflections)."""
    sim = simulate_phasing(src, 0.0, np.random.default_rng(0))
    sim.phi = sim.phi_true.copy()
    sim.fom = np.ones_like(sim.fom)
    return phasing_map(src, sim).array


def masks_for(cmap, prob, frac: float, d_min: float, fom: float) -> dict:
    """The three masks compared: the U-net's, local variance, and none (the refiner makes its own)."""
    unet = CrystalMap.from_array(threshold_fraction(prob, frac), cmap.cell, cmap.spacegroup)
    _, lv = local_variance_mask(cmap, frac, d_min=d_min, fom=fom)
    return {"unet": unet, "local_variance": lv, "refiner_own": None}


def one_crystal(name: str, mtz_name: str, pdb: str, args, rng, runner, card: dict) -> dict:
    mtz = gemmi.read_mtz_file(str(CORPUS / "diffraction" / mtz_name))
    st = gemmi.read_structure(str(CORPUS / "diffraction" / pdb))
    st.setup_entities()
    d_min = float(mtz.resolution_high())
    src = prepare_source(st, d_min, name=name, f_obs_mtz=mtz, f_label="FP")
    sim = simulate_phasing(src, args.phase_error, rng)
    cmap = phasing_map(src, sim)
    refl = Reflections(mtz=mtz, columns={"F": "FP"}, name=name)
    prob = sym_prob(cmap, runner, card)
    ms, mp, s_matthews = matthews_candidates(src, composition(name)[0])
    dist = LogitCutoffDistribution.from_card(card["p_u"])
    comb = combine(ms, mp, lambda s: dist.of_solvent(prob, s), float(prob.mean()))
    fom = float(np.mean(sim.fom))
    reference = true_map(src)
    fractions = [("matthews_fraction", s_matthews)]
    if abs(comb.solvent_fraction - s_matthews) > 0.005:
        fractions.append(("combined_fraction", comb.solvent_fraction))
    # the starting map is the FOM-weighted m·FP synthesis, so its coefficients give the FOMs
    extra = {} if args.weighting == "none" else {"weighting": args.weighting, "fom": "map"}
    variants = {}
    for label, frac in fractions:
        frac = float(np.clip(frac, 0.05, 0.95))
        for mlabel, mask in masks_for(cmap, prob, frac, d_min, fom).items():
            t0 = time.perf_counter()
            res = density_modify(cmap, refl, solvent_fraction=frac, mask=mask, cycles=args.cycles, mode=args.mode,
                                 **extra)
            secs = time.perf_counter() - t0
            phi_true = phases_at(reference, res.hkl)
            variants[f"{mlabel}@{label}"] = {
                "fraction": round(frac, 4),
                "mask_accuracy": mask_scores(mask, src.mask).accuracy if mask is not None else None,
                "phase_error_before": round(float(phase_error(res.hkl, phi_true, phases_at(cmap.array, res.hkl),
                                                              weights=res.amplitudes)), 2),
                "phase_error_after": round(float(phase_error(res.hkl, phi_true, res.phases,
                                                             weights=res.amplitudes)), 2),
                "seconds": round(secs, 1)}
            print(name, mlabel, label, variants[f"{mlabel}@{label}"], flush=True)
    return {"name": name, "d_min": d_min, "s_true": round(src.solvent_fraction, 4),
            "s_matthews": round(s_matthews, 4), "s_combined": round(comb.solvent_fraction, 4), "variants": variants}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="solvent-unet")
    ap.add_argument("--phase-error", type=float, default=45.0, help="mean starting phase error (degrees)")
    ap.add_argument("--cycles", type=int, default=20)
    ap.add_argument("--mode", default="flip", choices=("flatten", "flip"))
    ap.add_argument("--weighting", default="sigmaa", choices=("none", "sigmaa"))
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--figure", default="solvent_dm")
    args = ap.parse_args()
    runner, card = load_solvent_model(args.model)
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    rows = [one_crystal(*c, args, rng, runner, card) for c in CRYSTALS]
    settings = {k: getattr(args, k) for k in ("model", "phase_error", "cycles", "mode", "weighting", "seed")}
    write_figure(args.figure, {"settings": settings, "card_sha256": card.get("sha256"), "crystals": rows},
                 time.perf_counter() - t0)


if __name__ == "__main__":
    main()
