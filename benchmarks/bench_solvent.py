"""Solvent-mask benchmark: U-net vs local-variance masks, solvent content, density modification, timing.

Reads ../shared/corpus (held-out families, via data_build/solvent/test_sources.npz from
benchmarks/build_solvent_sources.py, and the structures/diffraction files).  Sections:

* ``--masks``: held-out-family crystals, simulated phasing maps at mean phase errors ``--phase-errors``
  (degrees; resolution-dependent, von Mises, FOM-weighted maps).  Scores (solvent = positive class) of
  the U-net at P > 0.5 (the paper's accuracy), the U-net and the local-variance mask thresholded at the
  true solvent fraction, and at the estimates a user would have (Matthews for local variance, eq. 2 for
  the U-net); solvent-content error of Matthews alone vs eq. 2.
* ``--dm``: density modification (crysplugins.crystal.refine.density_modify) of the real diffraction data
  sets (observed FP) from phases with simulated errors, with a fixed U-net mask vs a fixed local-variance
  mask (same solvent fraction), and the refiner's own updating local-variance mask; phase errors
  (amplitude-weighted, vs the model's phases) before and after.  ``--dm-weighting sigmaa`` runs the refiner
  with FOM/sigma-A weighting and phase combination, reading the starting FOMs off the FOM-weighted map
  (BENCHMARKS.md, "The same with σ_A / FOM weighting and phase combination").
* ``--timing``: whole-cell inference of the solvent-mask plugin on 1RX2 (MTZ FP/PHWT/FOM), onnxruntime vs
  torch, ``--threads`` threads.

    OMP_NUM_THREADS=2 python benchmarks/bench_solvent.py --masks --dm --timing --json out.json
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import gemmi
import numpy as np

from crysplugins.crystal import matthews
from crysplugins.crystal.masks import local_variance_mask, mask_scores, threshold_fraction
from crysplugins.crystal.solvent_content_combination import LogitCutoffDistribution, combine
from crysplugins.datasets.phasing import phasing_map, prepare_source, simulate_phasing
from crysplugins.datasets.solvent_windows import load_sources
from crysplugins.interface import CrystalMap
from crysplugins.runtime.solvent_unet import load_solvent_model, solvent_probability, symmetry_averaged

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"


VIEWS = 1  # --views: test-time augmentation of the U-net (mirror views averaged per tile)


def sym_prob(cmap: CrystalMap, session, card) -> np.ndarray:
    return symmetry_averaged(cmap, solvent_probability(cmap, session, card, views=VIEWS))


def composition(name: str) -> tuple[float, int]:
    """(MW of one copy in Da, copies in the ASU) from the corpus model's polymer chains."""
    st = gemmi.read_structure(str(CORPUS / "structures" / f"{name.split('-')[0]}.cif.gz"))
    st.setup_entities()
    seqs = []
    for ch in st[0]:
        pol = ch.get_polymer()
        if len(pol) >= 5:
            seqs.append(tuple(r.name for r in pol))
    weights = [gemmi.calculate_sequence_weight(list(s)) for s in seqs]
    counts = {s: seqs.count(s) for s in set(seqs)}
    copies = max(counts.values()) if counts else 1
    if "-packed" in name:
        copies = 1
    return float(sum(weights)) / copies, copies


def matthews_candidates(src, mw: float) -> tuple[list[float], list[float], float]:
    res = matthews.matthews_table(src.cell, src.spacegroup, mw, src.d_min)
    return ([r.solvent_fraction for r in res.rows], [r.probability for r in res.rows],
            res.best.solvent_fraction)


def bench_masks(session, card, phase_errors, seed: int, out: dict) -> None:
    sources = load_sources(Path("data_build/solvent/test_sources.npz"))
    dist = LogitCutoffDistribution.from_card(card["p_u"])
    rng = np.random.default_rng(seed)
    rows = []
    for pe in phase_errors:
        for src in sources:
            sim = simulate_phasing(src, pe, rng)
            cmap = phasing_map(src, sim)
            truth = src.mask
            s_true = src.solvent_fraction
            t0 = time.perf_counter()
            prob = sym_prob(cmap, session, card)
            t_unet = time.perf_counter() - t0
            mw, copies = composition(src.name)
            ms, mp, s_matthews = matthews_candidates(src, mw)
            expected = float(prob.mean())
            comb = combine(ms, mp, lambda s: dist.of_solvent(prob, s), expected)
            fom = float(np.mean(sim.fom))
            _, lv_true = local_variance_mask(cmap, s_true, d_min=src.d_min, fom=fom)
            _, lv_matt = local_variance_mask(cmap, float(np.clip(s_matthews, 0.05, 0.95)), d_min=src.d_min, fom=fom)
            row = {
                "name": src.name, "family": src.family, "spacegroup": src.spacegroup.hm, "d_min": src.d_min,
                "voxels": int(truth.size), "target_phase_error": pe, "phase_error": round(sim.mean_phase_error, 1),
                "mean_fom": round(fom, 3), "s_true": round(s_true, 4), "s_matthews": round(s_matthews, 4),
                "s_expected": round(expected, 4), "s_combined": round(comb.solvent_fraction, 4),
                "branch": comb.branch, "copies_true": copies, "unet_seconds": round(t_unet, 2),
                "unet_p05": mask_scores(prob > 0.5, truth).as_dict(),
                "unet_true_fraction": mask_scores(threshold_fraction(prob, s_true), truth).as_dict(),
                "unet_combined_fraction": mask_scores(threshold_fraction(prob, comb.solvent_fraction), truth).as_dict(),
                "lv_true_fraction": mask_scores(lv_true, truth).as_dict(),
                "lv_matthews_fraction": mask_scores(lv_matt, truth).as_dict(),
            }
            rows.append(row)
            print(f"{pe:4.0f} {src.name:14s} {src.d_min:.2f}A pe {sim.mean_phase_error:5.1f} "
                  f"unet {row['unet_p05']['accuracy']:.3f}/{row['unet_true_fraction']['accuracy']:.3f} "
                  f"lv {row['lv_true_fraction']['accuracy']:.3f} S {s_true:.3f} M {s_matthews:.3f} "
                  f"E {comb.solvent_fraction:.3f} ({comb.branch})", flush=True)
    out["masks"] = rows
    summary = {}
    for pe in phase_errors:
        sel = [r for r in rows if r["target_phase_error"] == pe]
        s = {"n": len(sel), "realised_phase_error": round(float(np.mean([r["phase_error"] for r in sel])), 1),
             "mean_fom": round(float(np.mean([r["mean_fom"] for r in sel])), 3)}
        for key in ("unet_p05", "unet_true_fraction", "unet_combined_fraction", "lv_true_fraction",
                    "lv_matthews_fraction"):
            s[key] = {m: round(float(np.mean([r[key][m] for r in sel])), 4)
                      for m in ("accuracy", "precision", "recall", "specificity", "f1")}
        s["solvent_mae_matthews"] = round(float(np.mean([abs(r["s_matthews"] - r["s_true"]) for r in sel])), 4)
        s["solvent_mae_combined"] = round(float(np.mean([abs(r["s_combined"] - r["s_true"]) for r in sel])), 4)
        s["solvent_mae_expected"] = round(float(np.mean([abs(r["s_expected"] - r["s_true"]) for r in sel])), 4)
        s["branches"] = {b: sum(r["branch"] == b for r in sel) for b in ("matthews", "conflation", "unet")}
        summary[str(pe)] = s
    out["masks_summary"] = summary
    print(json.dumps(summary, indent=1), flush=True)


def bench_dm(session, card, pe: float, cycles: int, seed: int, out: dict, mode: str = "flatten",
             weighting: str = "none") -> None:
    from crysplugins.crystal.metrics import phase_error
    from crysplugins.crystal.refine import density_modify
    from crysplugins.interface import Reflections

    rows = []
    rng = np.random.default_rng(seed)
    for name, mtz_name, pdb in (("1RX2", "1rx2_phases.mtz", "1rx2.pdb"), ("1RX4", "1rx4_phases.mtz", "1rx4.pdb")):
        mtz = gemmi.read_mtz_file(str(CORPUS / "diffraction" / mtz_name))
        st = gemmi.read_structure(str(CORPUS / "diffraction" / pdb))
        st.setup_entities()
        d_min = float(mtz.resolution_high())
        src = prepare_source(st, d_min, name=name, f_obs_mtz=mtz, f_label="FP")
        sim = simulate_phasing(src, pe, rng)
        cmap = phasing_map(src, sim)
        refl = Reflections(mtz=mtz, columns={"F": "FP"}, name=name)
        prob = sym_prob(cmap, session, card)
        mw, _ = composition(name)
        ms, mp, s_matthews = matthews_candidates(src, mw)
        dist = LogitCutoffDistribution.from_card(card["p_u"])
        comb = combine(ms, mp, lambda s: dist.of_solvent(prob, s), float(prob.mean()))
        fom = float(np.mean(sim.fom))

        # true phases at the refiner's (P1) reflections: FFT of the error-free model map
        true_sim = simulate_phasing(src, 0.0, np.random.default_rng(0))
        true_sim.phi = true_sim.phi_true.copy()
        true_sim.fom = np.ones_like(true_sim.fom)
        true_map = phasing_map(src, true_sim)

        def phases_at(arr: np.ndarray, hkl: np.ndarray) -> np.ndarray:
            ft = np.conj(np.fft.fftn(arr))
            n = arr.shape
            return np.degrees(np.angle(ft[hkl[:, 0] % n[0], hkl[:, 1] % n[1], hkl[:, 2] % n[2]]))

        variants = {}
        fractions = [("matthews_fraction", s_matthews)]
        if abs(comb.solvent_fraction - s_matthews) > 0.005:
            fractions.append(("combined_fraction", comb.solvent_fraction))
        for label, frac in fractions:
            frac = float(np.clip(frac, 0.05, 0.95))
            unet_mask = CrystalMap.from_array(threshold_fraction(prob, frac), cmap.cell, cmap.spacegroup)
            _, lv_mask = local_variance_mask(cmap, frac, d_min=d_min, fom=fom)
            for mlabel, mask in (("unet", unet_mask), ("local_variance", lv_mask), ("refiner_own", None)):
                t0 = time.perf_counter()
                # the starting map is the FOM-weighted m·FP synthesis, so its coefficients give the FOMs
                extra = {} if weighting == "none" else {"weighting": weighting, "fom": "map"}
                res = density_modify(cmap, refl, solvent_fraction=frac, mask=mask, cycles=cycles, mode=mode,
                                     **extra)
                secs = time.perf_counter() - t0
                hkl = res.hkl
                phi_true = phases_at(true_map.array, hkl)
                phi_start = phases_at(cmap.array, hkl)
                before = phase_error(hkl, phi_true, phi_start, weights=res.amplitudes)
                after = phase_error(hkl, phi_true, res.phases, weights=res.amplitudes)
                score = mask_scores(mask, src.mask).accuracy if mask is not None else None
                variants[f"{mlabel}@{label}"] = {"fraction": round(frac, 4), "mask_accuracy": score,
                                                 "phase_error_before": round(float(before), 2),
                                                 "phase_error_after": round(float(after), 2),
                                                 "seconds": round(secs, 1)}
                print(name, pe, cycles, mode, weighting, mlabel, label, variants[f"{mlabel}@{label}"], flush=True)
        rows.append({"name": name, "d_min": d_min, "s_true": round(src.solvent_fraction, 4),
                     "s_matthews": round(s_matthews, 4), "s_combined": round(comb.solvent_fraction, 4),
                     "target_phase_error": pe, "cycles": cycles, "mode": mode, "weighting": weighting,
                     "variants": variants})
    out.setdefault("dm", []).extend(rows)


def bench_timing(session, card, threads: int, out: dict) -> None:
    import torch

    from crysplugins.crystal.io import read_mtz
    from crysplugins.crystal.phasing_input import from_reflections
    from crysplugins.runtime.tiling import predict_tiled
    from crysplugins.training.solvent_task import load_checkpoint

    torch.set_num_threads(threads)
    refl = read_mtz(CORPUS / "diffraction" / "1rx2_phases.mtz", columns={"F": "FP", "PHI": "PHWT", "FOM": "FOM"})
    pin = from_reflections(refl)
    res = {"grid": list(pin.map.shape), "threads": threads}
    for _ in range(2):
        t0 = time.perf_counter()
        solvent_probability(pin.map, session, card)
        res["onnxruntime_s"] = round(time.perf_counter() - t0, 3)
    model, _ = load_checkpoint(out["checkpoint"])
    arr = pin.map.array
    arr = (arr - arr.mean()) / arr.std()

    def torch_predict(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            lg = model(torch.from_numpy(x)).numpy()
        return 1.0 / (1.0 + np.exp(lg[:, :1] - lg[:, 1:2]))

    for _ in range(2):
        t0 = time.perf_counter()
        predict_tiled(arr, torch_predict, window=48, overlap=16, batch_size=2)
        res["torch_s"] = round(time.perf_counter() - t0, 3)
    out["timing"] = res
    print(res, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="solvent-unet")
    ap.add_argument("--checkpoint", default="runs/solvent-unet/best.pt")
    ap.add_argument("--masks", action="store_true")
    ap.add_argument("--dm", action="store_true")
    ap.add_argument("--timing", action="store_true")
    ap.add_argument("--phase-errors", default="50,65,80")
    ap.add_argument("--dm-phase-error", default="65", help="comma-separated mean phase errors (degrees)")
    ap.add_argument("--dm-cycles", default="100", help="comma-separated cycle counts")
    ap.add_argument("--dm-mode", default="flatten", help="comma-separated: flatten, flip")
    ap.add_argument("--dm-weighting", default="none",
                    help="density_modify weighting: none (unweighted projection) or sigmaa (FOM/sigma-A weighting, "
                         "phase combination with the starting phases)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--views", type=int, default=1, choices=range(1, 9),
                    help="U-net test-time augmentation: mirror views per tile (1-8)")
    ap.add_argument("--json", default="benchmarks/solvent_results.json")
    args = ap.parse_args()
    global VIEWS
    VIEWS = args.views
    session, card = load_solvent_model(args.model)
    out: dict = {"model": args.model, "checkpoint": args.checkpoint, "card_sha256": card.get("sha256"),
                 "views": args.views}
    if Path(args.json).exists():
        out = {**json.loads(Path(args.json).read_text()), **out}
    if args.masks:
        bench_masks(session, card, [float(x) for x in args.phase_errors.split(",")], args.seed, out)
    if args.dm:
        out["dm"] = []
        for pe in args.dm_phase_error.split(","):
            for cycles in args.dm_cycles.split(","):
                for mode in args.dm_mode.split(","):
                    bench_dm(session, card, float(pe), int(cycles), args.seed, out, mode, args.dm_weighting)
    if args.timing:
        bench_timing(session, card, args.threads, out)
    Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
