"""``crysplugins density-modify``: density modification of experimental phases in any space group.

Input: an MTZ file with amplitudes (F, or I converted with √max(I, 0)), their σ, and experimental
phases as PHIB + FOM or Hendrickson–Lattman coefficients HLA–HLD (columns picked automatically or named
with ``--reflections-columns F=FP,SIGF=SIGFP,PHI=PHIB,FOM=FOM`` / ``HLA=..,HLB=..,HLC=..,HLD=..``); a
solvent fraction, or a sequence of one copy (the solvent fraction then combines the Matthews candidates with
the solvent U-net's reading of the starting map, eq. 2 of Skubák 2024); a mask: the solvent U-net re-run
on the current map every few cycles (default), the local-rms mask, or a mask map file (solvent = 1).
Three runs whose first masks differ are averaged (:mod:`crysplugins.crystal.dm.ensemble`) on small grids (fewer
than 100,000 points: ``--ensemble auto``, the default), on any grid (``--ensemble always``) or never.
``--refiner cctbx-dm`` runs cctbx instead of the built-in engine (:mod:`crysplugins.crystal.dm`).

Output in ``--out``: ``density_modified.mtz`` (FP, SIGFP, FWT/PHWT weighted map coefficients, PHIB/FOM,
HLA–HLD; the input's cell and space group), ``density_modified.ccp4`` (whole cell), ``cycles.tsv`` and
``cycles.png`` (the per-cycle trace; the PNG needs matplotlib).
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import gemmi
import numpy as np

from crysplugins.crystal import matthews
from crysplugins.crystal.dm import DMSettings, ReflectionSet, run_dm
from crysplugins.crystal.dm.hl import hl_from_phase_fom, phase_fom_from_hl
from crysplugins.crystal.dm.selection import VARIANTS, run_selected, variant_settings
from crysplugins.crystal.dm.settings import ENSEMBLE_RADII
from crysplugins.crystal.io import check_mtz_header, make_mtz, read_map, read_sequence, write_map
from crysplugins.crystal.phasing_input import shannon_grid_shape
from crysplugins.errors import CrysError
from crysplugins.inputs import parse_columns
from crysplugins.interface import CrystalMap
from crysplugins.plugins.cctbx_dm import run_cctbx_dm
from crysplugins.runtime.solvent_unet import MODEL_NAME, load_solvent_model, solvent_probability, unet_solvent_content
from crysplugins.validate import writable_folder

SELECT_DEFAULT = "none"
AUTO = {"F": ("FP", "F", "FOBS", "F-obs"), "SIGF": ("SIGFP", "SIGF", "SIGFOBS", "SIGF-obs"),
        "I": ("IMEAN", "I", "IOBS", "I-obs"), "SIGI": ("SIGIMEAN", "SIGI", "SIGIOBS"),
        "PHI": ("PHIB", "PHI", "PHIM"), "FOM": ("FOM", "FOMM"),
        "HLA": ("HLA", "HLAM"), "HLB": ("HLB", "HLBM"), "HLC": ("HLC", "HLCM"), "HLD": ("HLD", "HLDM")}


def read_phasing_mtz(path: str | Path,
                     columns: dict[str, str] | None = None) -> tuple[ReflectionSet, np.ndarray, list[str]]:
    """(reflections, HL coefficients (n, 4), notes) from an MTZ file with F/I, σ and PHIB+FOM or HL."""
    p = Path(path)
    if not p.is_file():
        raise CrysError(f"The MTZ file {p} does not exist.")
    check_mtz_header(p)
    try:
        mtz = gemmi.read_mtz_file(str(p))
    except Exception as exc:  # noqa: BLE001 - gemmi's reasons vary; one sentence for the user
        raise CrysError(f"{p} is not a readable MTZ file ({exc}).") from None
    if not mtz.cell.is_crystal() or mtz.cell.volume < 1.0:
        raise CrysError(f"The MTZ file {p} has no unit cell.")
    labels = {c.label for c in mtz.columns}
    chosen = dict(columns or {})
    for role, label in chosen.items():
        if label not in labels:
            raise CrysError(f"The MTZ file {p} has no column {label} (for {role}).")
    for role, names in AUTO.items():
        if role not in chosen:
            hit = next((n for n in names if n in labels), None)
            if hit:
                chosen[role] = hit
    data = np.array(mtz, copy=False)
    col = {c.label: i for i, c in enumerate(mtz.columns)}
    get = lambda role: data[:, col[chosen[role]]].astype(np.float64)  # noqa: E731
    if "F" in chosen:
        f = get("F")
        sig = get("SIGF") if "SIGF" in chosen else np.zeros(len(f))
    elif "I" in chosen:
        f = np.sqrt(np.clip(get("I"), 0.0, None))
        sig = 0.5 * get("SIGI") / np.maximum(f, 1e-6) if "SIGI" in chosen else np.zeros(len(f))
    else:
        raise CrysError(f"The MTZ file {p} has no amplitude or intensity column; name one with "
                        "--reflections-columns F=LABEL.")
    use_hl = all(r in chosen for r in ("HLA", "HLB", "HLC", "HLD")) and not ("PHI" in (columns or {}))
    if not use_hl and not ("PHI" in chosen and "FOM" in chosen):
        raise CrysError(f"The MTZ file {p} has no experimental phase column (PHIB with FOM, or HLA-HLD); "
                        "name them with --reflections-columns.")
    hkl = data[:, :3].astype(np.int32)
    phase_cols = [get(r) for r in (("HLA", "HLB", "HLC", "HLD") if use_hl else ("PHI", "FOM"))]
    ok = np.isfinite(f) & (f > 0) & np.all([np.isfinite(c) for c in phase_cols], axis=0) & np.any(hkl != 0, axis=1)
    if ok.sum() < 10:
        raise CrysError(f"The MTZ file {p} holds fewer than 10 reflections with amplitudes and phases.")
    refl = ReflectionSet(mtz.cell, mtz.spacegroup or gemmi.SpaceGroup("P 1"), hkl[ok], f[ok],
                         np.nan_to_num(sig[ok]))
    if use_hl:
        hl = np.stack([c[ok] for c in phase_cols], axis=1)
    else:
        hl = hl_from_phase_fom(np.radians(phase_cols[0][ok]), np.clip(phase_cols[1][ok], 0, 1), refl.centric)
    notes = ["columns: " + ", ".join(f"{k}={v}" for k, v in sorted(chosen.items())),
             f"phases from {'HL coefficients' if use_hl else 'PHIB/FOM'}; {int(ok.sum())} reflections, "
             f"{refl.spacegroup.hm}, {refl.d_min:.2f} Å"]
    return refl, hl, notes


def unet_mask_provider(model_name: str = MODEL_NAME) -> Any:
    """The solvent U-net as a mask provider (P(solvent) on the Shannon grid of the current map)."""

    session, card = load_solvent_model(model_name)

    def provide(req):  # type: ignore[no-untyped-def]
        cmap = req.map_on(shannon_grid_shape(req.map.cell, req.map.spacegroup, req.d_min))
        return CrystalMap.from_array(solvent_probability(cmap, session, card), cmap.cell, cmap.spacegroup)
    return provide


def file_mask_provider(path: str, refl: ReflectionSet) -> Any:
    """A fixed mask from a map file (solvent = 1) on the reflections' cell."""
    mask = read_map(path)
    if not mask.cell.approx(refl.cell, 1e-2):
        raise CrysError(f"The mask map {path} has a different unit cell from the reflections.")
    return lambda req: mask


def solvent_fraction(args: argparse.Namespace, refl: ReflectionSet, hl: np.ndarray) -> tuple[float, str]:
    """(solvent fraction, which estimate it is) from ``--solvent-fraction`` or from ``--sequence``.

    With a sequence: the Matthews candidates (Kantardjieff & Rupp) combined with the solvent U-net's
    reading of the starting map by eq. 2 of Skubák 2024 (section 2.3), estimated once before DM;
    Matthews alone when the U-net cannot run.
    """
    if args.solvent_fraction is not None:
        if not 0.0 < args.solvent_fraction < 1.0:
            raise CrysError(f"The solvent fraction must be between 0 and 1, not {args.solvent_fraction}.")
        return float(args.solvent_fraction), "given with --solvent-fraction"
    if not args.sequence:
        raise CrysError("density-modify needs --solvent-fraction or --sequence.")

    table = matthews.matthews_table(refl.cell, refl.spacegroup, read_sequence(args.sequence).weight(), refl.d_min)
    best = table.best
    matthews_note = (f"Matthews {best.solvent_fraction:.3f} ({best.copies} cop{'y' if best.copies == 1 else 'ies'}, "
                     f"P = {best.probability:.2f})")
    try:

        phi, fom = phase_fom_from_hl(hl, refl.centric, refl.centric_phase)
        start = refl.crystal_map(refl.to_map(refl.fobs * fom * np.exp(1j * phi), refl.grid_shape(3.0)),
                                 name="starting map")
        comb, _ = unet_solvent_content(start, [r.solvent_fraction for r in table.rows],
                                       [r.probability for r in table.rows], d_min=refl.d_min)
    except (CrysError, ImportError, OSError) as exc:
        return float(best.solvent_fraction), f"{matthews_note}; the U-net estimate was not available ({exc})"
    return float(comb.solvent_fraction), (f"eq. 2 ({comb.branch}) of {matthews_note} and the U-net's "
                                          f"{comb.expected:.3f} (eq. 1) on the starting map")


def write_outputs(out: Path, refl: ReflectionSet, phib: np.ndarray, fom: np.ndarray, hl: np.ndarray,
                  fwt: np.ndarray, cmap: Any, trace: list[dict[str, Any]]) -> list[Path]:
    """density_modified.mtz / .ccp4, cycles.tsv and (with matplotlib) cycles.png in ``out``."""
    mtz = make_mtz(refl.cell, refl.spacegroup, refl.hkl, {
        "FP": ("F", refl.fobs), "SIGFP": ("Q", refl.sigf), "FWT": ("F", np.abs(fwt)),
        "PHWT": ("P", np.degrees(np.angle(fwt))), "PHIB": ("P", np.mod(phib, 360.0)), "FOM": ("W", fom),
        "HLA": ("A", hl[:, 0]), "HLB": ("A", hl[:, 1]), "HLC": ("A", hl[:, 2]), "HLD": ("A", hl[:, 3])},
        title="crysplugins density-modify")
    written = [out / "density_modified.mtz", out / "density_modified.ccp4", out / "cycles.tsv"]
    mtz.write_to_file(str(written[0]))
    write_map(cmap, written[1])
    keys = list(trace[0]) if trace else []
    lines = ["\t".join(keys)] + ["\t".join(f"{r[k]:.4g}" if isinstance(r[k], float) else str(r[k]) for k in keys)
                                 for r in trace]
    written[2].write_text("\n".join(lines) + "\n")
    png = _plot_trace(out / "cycles.png", trace)
    return written + ([png] if png else [])


def _plot_trace(path: Path, trace: list[dict[str, Any]]) -> Path | None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    if not trace:
        return None
    cyc = [r["cycle"] for r in trace]
    fig, axes = plt.subplots(1, 4, figsize=(13, 3))
    for ax, key, label in zip(axes, ("fom", "phase_change", "solvent_fraction", "mask_agreement"),
                              ("mean FOM", "mean phase change (°)", "solvent fraction", "mask agreement")):
        ax.plot(cyc, [r.get(key, np.nan) for r in trace], marker=".")
        ax.set_xlabel("cycle")
        ax.set_title(label, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def cmd_density_modify(args: argparse.Namespace) -> int:

    refl, hl, notes = read_phasing_mtz(args.reflections, parse_columns(args.reflections_columns))
    s_frac, s_note = solvent_fraction(args, refl, hl)
    out = writable_folder(args.out)
    if args.refiner == "cctbx-dm":

        res = run_cctbx_dm(refl.cell, refl.spacegroup, refl.hkl, refl.fobs, refl.sigf, hl, s_frac)
        rs = ReflectionSet(refl.cell, refl.spacegroup, res.hkl,
                           np.nan_to_num(np.abs(refl.values_at(refl.fobs.astype(complex), res.hkl))),
                           np.nan_to_num(np.abs(refl.values_at(refl.sigf.astype(complex), res.hkl))))
        cmap = rs.crystal_map(rs.to_map(res.fwt, rs.grid_shape(3.0)), name="cctbx-dm")
        written = write_outputs(out, rs, res.phib, res.fom, res.hl, res.fwt, cmap, [])
    else:
        settings = DMSettings()
        if args.cycles is not None:
            if args.cycles < 3:
                raise CrysError("density-modify needs at least 3 cycles.")
            settings.initial_steps, settings.shrink_steps = args.cycles // 4, args.cycles // 2
            settings.final_steps = args.cycles - settings.initial_steps - settings.shrink_steps
        if args.ensemble == "always":
            settings.ensemble = ENSEMBLE_RADII
        elif args.ensemble == "never":
            settings.ensemble_below = 0
        if args.mask == "unet":
            provider = unet_mask_provider()
        elif args.mask == "local-variance":
            provider = None
        else:
            provider = file_mask_provider(args.mask, refl)
            settings.mask.provider_weight_final = None  # a user's mask keeps its weight in every cycle
        res = _run_engine(refl, hl, settings, s_frac, provider, args.select, notes)
        written = write_outputs(out, refl, res.phib, res.fom, res.hl, res.fwt, res.map, res.trace)
        if res.info["sigmaa_scale"] != settings.weighting.sigmaa_scale:
            notes.append(f"starting phases are poor (mean FOM {res.info['start_fom']:.2f}): the modified map's σA is "
                         f"scaled by {res.info['sigmaa_scale']:.2f}, so the experimental phases keep more weight")
        if "members" in res.info:
            notes.append(f"averaged {len(res.info['members'])} runs whose first masks had radii d_min + "
                         + ", ".join(f"{m['radius_extra']:g}" for m in res.info["members"]) + " Å")
        notes.append(f"final mean FOM {np.average(res.fom, weights=refl.fobs):.3f} after {len(res.trace)} cycles "
                     f"({res.info['seconds']:.1f} s)")
    for line in notes + [f"solvent fraction {s_frac:.3f}: {s_note}"] + [f"wrote {p}" for p in written]:
        print(line)
    return 0


def _run_engine(refl: ReflectionSet, hl: np.ndarray, settings: DMSettings, s_frac: float, provider: Any,
                select: str, notes: list[str]) -> Any:
    """One engine run, or (``select`` = comma-separated variant names) every variant and the one whose
    omit-map amplitudes agree best with F_obs (:mod:`crysplugins.crystal.dm.selection`), its name and
    statistic added to every trace row and both statistics to ``notes``."""
    names = tuple(n.strip() for n in select.split(",") if n.strip()) if select not in ("", "none") else ()
    if len(names) < 2:
        if names and names[0] != "default":
            settings = variant_settings(settings, names)[0]
        return run_dm(refl, hl, settings, solvent_fraction=s_frac, mask_provider=provider)
    res, _ = run_selected(refl, hl, settings, names, solvent_fraction=s_frac, mask_provider=provider)
    sel = res.info["selection"]
    for row in res.trace:
        row["variant"], row["omit_cc"] = sel["chosen"], sel["omit_cc"][sel["chosen"]]
    notes.append(f"chose the {sel['chosen']} run: omit-map amplitude correlation "
                 + ", ".join(f"{n} {v:.4f}" for n, v in sel["omit_cc"].items()))
    return res


def add_parser(sub: Any) -> None:
    p = sub.add_parser("density-modify", help="density-modify experimental phases (PHIB/FOM or HL) in any "
                                              "space group", description=__doc__.split("\n\n")[0])
    p.add_argument("--reflections", required=True, help="MTZ with F (or I), SIGF and PHIB+FOM or HLA-HLD")
    p.add_argument("--reflections-columns", default=None, help="e.g. F=FP,SIGF=SIGFP,PHI=PHIB,FOM=FOM")
    p.add_argument("--sequence", default=None,
                   help="FASTA file or one-letter sequence of one copy (solvent fraction: Matthews + U-net, eq. 2)")
    p.add_argument("--solvent-fraction", type=float, default=None)
    p.add_argument("--mask", default="unet", help="unet (default), local-variance, or a mask map file (solvent=1)")
    p.add_argument("--cycles", type=int, default=None, help="number of cycles (default 40)")
    p.add_argument("--select", default=SELECT_DEFAULT,
                   help="engine variants to run, keeping the one whose omit maps predict |F_obs| best: "
                        f"comma-separated from {', '.join(VARIANTS)}, or none (default {SELECT_DEFAULT})")
    p.add_argument("--ensemble", nargs="?", const="always", default="auto", choices=("auto", "always", "never"),
                   help="average three runs whose first masks differ (about 3x the time; better from poor phases): "
                        "auto (default: on grids of fewer than 100,000 points), always (also plain --ensemble), never")
    p.add_argument("--refiner", default="crysplugins", choices=("crysplugins", "cctbx-dm"))
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(func=cmd_density_modify)
