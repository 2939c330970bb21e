"""Solvent masks on held-out families: the U-net against local variance, and the solvent content.

Reads ``data_build/solvent/test_sources.npz`` (the 17 held-out-family crystals; build it from
../shared/corpus with ``python benchmarks/build_solvent_sources.py --test-only``, a few seconds) and the
corpus structures (for each crystal's composition).  For each mean phase error (``--phase-errors``,
degrees; von Mises errors that grow with resolution, FOM-weighted maps on the Shannon grid) it scores,
with solvent as the positive class:

* the U-net's whole-cell, symmetry-averaged P(solvent) > 0.5 (the paper's accuracy, section 2.2), and the
  U-net thresholded at the true solvent fraction and at the eq. 2 estimate;
* the local-variance mask at the true fraction and at the Matthews fraction (what a classical pipeline has);
* the solvent content: mean absolute error of Matthews alone, of the U-net's mean P (eq. 1) and of eq. 2.

Writes two figures, ``benchmarks/out/solvent_masks.json`` (accuracy and the other scores, per crystal
and averaged) and ``benchmarks/out/solvent_content.json`` (the solvent-content errors of the same run).

    OMP_NUM_THREADS=1 CRYSPLUGINS_THREADS=1 python benchmarks/bench_solvent.py
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import gemmi
import numpy as np

from crysplugins.crystal import matthews
from crysplugins.crystal.masks import local_variance_mask, mask_scores, threshold_fraction
from crysplugins.crystal.solvent_content_combination import LogitCutoffDistribution, combine
from crysplugins.datasets.phasing import phasing_map, simulate_phasing
from crysplugins.datasets.solvent_windows import load_sources
from crysplugins.interface import CrystalMap
from crysplugins.runtime.solvent_unet import load_solvent_model, solvent_probability, symmetry_averaged
from figure_output import write_figure

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"
SOURCES = Path("data_build/solvent/test_sources.npz")
SCORES = ("unet_p05", "unet_true_fraction", "unet_combined_fraction", "lv_true_fraction", "lv_matthews_fraction")


def sym_prob(cmap: CrystalMap, runner, card: dict, views: int = 1) -> np.ndarray:
    """The U-net's P(solvent) over the whole cell, averaged over the space group's symmetry mates."""
    return symmetry_averaged(cmap, solvent_probability(cmap, runner, card, views=views))


def composition(name: str) -> tuple[float, int]:
    """(MW of one copy in Da, copies in the ASU) from the corpus model's polymer chains."""
    st = gemmi.read_structure(str(CORPUS / "structures" / f"{name.split('-')[0]}.cif.gz"))
    st.setup_entities()
    seqs = [tuple(r.name for r in ch.get_polymer()) for ch in st[0] if len(ch.get_polymer()) >= 5]
    weights = [gemmi.calculate_sequence_weight(list(s)) for s in seqs]
    counts = {s: seqs.count(s) for s in set(seqs)}
    copies = 1 if "-packed" in name else (max(counts.values()) if counts else 1)
    return float(sum(weights)) / copies, copies


def matthews_candidates(src, mw: float) -> tuple[list[float], list[float], float]:
    """Solvent fractions and probabilities of every copy number, and the most probable fraction."""
    res = matthews.matthews_table(src.cell, src.spacegroup, mw, src.d_min)
    return ([r.solvent_fraction for r in res.rows], [r.probability for r in res.rows],
            res.best.solvent_fraction)


def score_crystal(src, pe: float, rng, runner, card: dict, views: int) -> dict:
    """Every mask and solvent-content estimate for one crystal at one mean phase error."""
    sim = simulate_phasing(src, pe, rng)
    cmap = phasing_map(src, sim)
    truth, s_true = src.mask, src.solvent_fraction
    prob = sym_prob(cmap, runner, card, views)
    ms, mp, s_matthews = matthews_candidates(src, composition(src.name)[0])
    expected = float(prob.mean())
    dist = LogitCutoffDistribution.from_card(card["p_u"])
    comb = combine(ms, mp, lambda s: dist.of_solvent(prob, s), expected)
    fom = float(np.mean(sim.fom))
    _, lv_true = local_variance_mask(cmap, s_true, d_min=src.d_min, fom=fom)
    _, lv_matt = local_variance_mask(cmap, float(np.clip(s_matthews, 0.05, 0.95)), d_min=src.d_min, fom=fom)
    return {
        "name": src.name, "family": src.family, "spacegroup": src.spacegroup.hm, "d_min": src.d_min,
        "target_phase_error": pe, "phase_error": round(sim.mean_phase_error, 1), "mean_fom": round(fom, 3),
        "s_true": round(s_true, 4), "s_matthews": round(s_matthews, 4), "s_expected": round(expected, 4),
        "s_combined": round(comb.solvent_fraction, 4), "branch": comb.branch,
        "unet_p05": mask_scores(prob > 0.5, truth).as_dict(),
        "unet_true_fraction": mask_scores(threshold_fraction(prob, s_true), truth).as_dict(),
        "unet_combined_fraction": mask_scores(threshold_fraction(prob, comb.solvent_fraction), truth).as_dict(),
        "lv_true_fraction": mask_scores(lv_true, truth).as_dict(),
        "lv_matthews_fraction": mask_scores(lv_matt, truth).as_dict(),
    }


def summarise(rows: list[dict]) -> tuple[dict, dict]:
    """Per phase error: mean mask scores over crystals, and the mean absolute solvent-content errors."""
    masks, content = {}, {}
    for pe in sorted({r["target_phase_error"] for r in rows}):
        sel = [r for r in rows if r["target_phase_error"] == pe]
        m = {"n": len(sel), "realised_phase_error": round(float(np.mean([r["phase_error"] for r in sel])), 1),
             "mean_fom": round(float(np.mean([r["mean_fom"] for r in sel])), 3)}
        for key in SCORES:
            m[key] = {s: round(float(np.mean([r[key][s] for r in sel])), 4)
                      for s in ("accuracy", "precision", "recall", "specificity", "f1")}
        masks[str(pe)] = m
        mae = lambda k: round(float(np.mean([abs(r[k] - r["s_true"]) for r in sel])), 4)  # noqa: E731
        content[str(pe)] = {"n": len(sel), "mae_matthews": mae("s_matthews"), "mae_unet_eq1": mae("s_expected"),
                            "mae_eq2": mae("s_combined"),
                            "eq2_branches": {b: sum(r["branch"] == b for r in sel)
                                             for b in ("matthews", "conflation", "unet")}}
    return masks, content


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="solvent-unet", help="solvent U-net model name (model registry)")
    ap.add_argument("--sources", type=Path, default=SOURCES)
    ap.add_argument("--phase-errors", default="50,65,80", help="comma-separated mean phase errors (degrees)")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--views", type=int, default=1, choices=range(1, 9),
                    help="test-time augmentation: mirror views averaged per tile (1-8)")
    ap.add_argument("--figure", default="solvent_masks",
                    help="name of the masks figure (the content figure is named with 'masks' -> 'content')")
    args = ap.parse_args()
    runner, card = load_solvent_model(args.model)
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    rows = []
    for pe in (float(x) for x in args.phase_errors.split(",")):
        for src in load_sources(args.sources):
            rows.append(score_crystal(src, pe, rng, runner, card, args.views))
            r = rows[-1]
            print(f"{pe:4.0f} {src.name:14s} pe {r['phase_error']:5.1f} unet {r['unet_p05']['accuracy']:.3f} "
                  f"lv {r['lv_true_fraction']['accuracy']:.3f} S {r['s_true']:.3f} E {r['s_combined']:.3f}", flush=True)
    masks, content = summarise(rows)
    common = {"model": args.model, "card_sha256": card.get("sha256"), "views": args.views, "seed": args.seed}
    secs = time.perf_counter() - t0
    write_figure(args.figure, {**common, "summary": masks, "crystals": rows}, secs)
    write_figure(args.figure.replace("masks", "content"), {**common, "summary": content}, secs)


if __name__ == "__main__":
    main()
