"""Density modification on real data (1RX2, 1RX4): fixed U-net and local-variance masks against the engine's own.

Reads ``../shared/corpus/diffraction`` (1RX2 at 1.8 Å and 1RX4 at 2.2 Å, P 21 21 21, observed FP, and the
deposited models).  Starting phases are the model's phases with simulated errors (``--phase-error``, mean,
degrees, with their figures of merit).  The density-modification engine (:mod:`crysplugins.crystal.dm`,
``crysplugins density-modify``; its defaults, 40 cycles) then runs four ways at the same (Matthews) solvent
fraction: with the U-net mask of the starting map fixed in every cycle, with the local-variance mask of the
starting map fixed, with its own local-variance mask re-made every cycle, and with the U-net re-run on the
current map (``--mask unet``, the command's default); also at the eq. 2 fraction when it differs.  Score:
|F|-weighted mean phase error against the model's phases, before and after.  Writes
``benchmarks/out/solvent_dm.json``.

    OMP_NUM_THREADS=1 CRYSPLUGINS_THREADS=1 python benchmarks/bench_solvent_dm.py --phase-error 45
"""
from __future__ import annotations

import argparse
import time

import gemmi
import numpy as np

from bench_solvent import CORPUS, composition, matthews_candidates, sym_prob
from crysplugins.crystal.dm import DMSettings, ReflectionSet, run_dm
from crysplugins.crystal.masks import local_variance_mask, mask_scores, threshold_fraction
from crysplugins.crystal.metrics import phase_error
from crysplugins.crystal.solvent_content_combination import LogitCutoffDistribution, combine
from crysplugins.datasets.phasing import phasing_map, phasing_reflections, prepare_source, simulate_phasing
from crysplugins.dm_command import unet_mask_provider
from crysplugins.interface import CrystalMap
from crysplugins.runtime.solvent_unet import load_solvent_model
from figure_output import write_figure

CRYSTALS = (("1RX2", "1rx2_phases.mtz", "1rx2.pdb"), ("1RX4", "1rx4_phases.mtz", "1rx4.pdb"))


def masks_for(cmap, prob, frac: float, d_min: float, fom: float, in_loop) -> dict:
    """The four masks compared: the U-net's and local variance's of the starting map (fixed), the engine's own
    local variance (re-made every cycle) and the U-net re-run inside the cycles."""
    unet = CrystalMap.from_array(threshold_fraction(prob, frac), cmap.cell, cmap.spacegroup)
    _, lv = local_variance_mask(cmap, frac, d_min=d_min, fom=fom)
    return {"unet": unet, "local_variance": lv, "engine_own": None, "unet_in_loop": in_loop}


def run_engine(refl: ReflectionSet, hl: np.ndarray, frac: float, mask) -> np.ndarray:
    """Best phases (degrees) of the engine's defaults with a fixed mask map, its own mask (None) or a mask
    provider re-run in the cycles (the U-net)."""
    settings = DMSettings()
    provider = mask
    if isinstance(mask, CrystalMap):
        settings.mask.provider_weight, settings.mask.provider_weight_final = 1.0, None
        provider = lambda _req: mask  # noqa: E731 - the same mask in every cycle
    return run_dm(refl, hl, settings, solvent_fraction=frac, mask_provider=provider).phib


def mean_error(refl: ReflectionSet, phi_true: np.ndarray, phi: np.ndarray) -> float:
    """|F_obs|-weighted mean phase error (degrees in, degrees out)."""
    return round(float(phase_error(None, phi_true, phi, weights=refl.fobs)), 2)


def one_crystal(name: str, mtz_name: str, pdb: str, args, rng, runner, card: dict, in_loop) -> dict:
    mtz = gemmi.read_mtz_file(str(CORPUS / "diffraction" / mtz_name))
    st = gemmi.read_structure(str(CORPUS / "diffraction" / pdb))
    st.setup_entities()
    d_min = float(mtz.resolution_high())
    src = prepare_source(st, d_min, name=name, f_obs_mtz=mtz, f_label="FP")
    sim = simulate_phasing(src, args.phase_error, rng)
    cmap = phasing_map(src, sim)
    refl, hl, ok = phasing_reflections(src, sim)
    phi_true = sim.phi_true[ok]
    prob = sym_prob(cmap, runner, card)
    ms, mp, s_matthews = matthews_candidates(src, composition(name)[0])
    dist = LogitCutoffDistribution.from_card(card["p_u"])
    comb = combine(ms, mp, lambda s: dist.of_solvent(prob, s), float(prob.mean()))
    fom = float(np.mean(sim.fom))
    fractions = [("matthews_fraction", s_matthews)]
    if abs(comb.solvent_fraction - s_matthews) > 0.005:
        fractions.append(("combined_fraction", comb.solvent_fraction))
    variants = {}
    for label, frac in fractions:
        frac = float(np.clip(frac, 0.05, 0.95))
        for mlabel, mask in masks_for(cmap, prob, frac, d_min, fom, in_loop).items():
            t0 = time.perf_counter()
            phib = run_engine(refl, hl, frac, mask)
            secs = time.perf_counter() - t0
            variants[f"{mlabel}@{label}"] = {
                "fraction": round(frac, 4),
                "mask_accuracy": mask_scores(mask, src.mask).accuracy if isinstance(mask, CrystalMap) else None,
                "phase_error_before": mean_error(refl, phi_true, sim.phi[ok]),
                "phase_error_after": mean_error(refl, phi_true, phib),
                "seconds": round(secs, 1)}
            print(name, mlabel, label, variants[f"{mlabel}@{label}"], flush=True)
    return {"name": name, "d_min": d_min, "s_true": round(src.solvent_fraction, 4),
            "s_matthews": round(s_matthews, 4), "s_combined": round(comb.solvent_fraction, 4), "variants": variants}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="solvent-unet")
    ap.add_argument("--phase-error", type=float, default=45.0, help="mean starting phase error (degrees)")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--figure", default="solvent_dm")
    args = ap.parse_args()
    runner, card = load_solvent_model(args.model)
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    in_loop = unet_mask_provider(args.model)  # loaded once, outside the timed runs
    rows = [one_crystal(*c, args, rng, runner, card, in_loop) for c in CRYSTALS]
    settings = {k: getattr(args, k) for k in ("model", "phase_error", "seed")}
    settings["engine"] = repr(DMSettings())
    write_figure(args.figure, {"settings": settings, "card_sha256": card.get("sha256"), "crystals": rows},
                 time.perf_counter() - t0)


if __name__ == "__main__":
    main()
