"""Reference protein-density histograms for histogram matching in density modification.

For deposited chains of corpus families that are NOT in the density-modification benchmark (families
F02 and F03 of ``../shared/corpus/MANIFEST.tsv``), each packed into a crystal of our own
(:func:`crysplugins.datasets.solvent_windows.pack_chain`), the model map (protein + flat bulk solvent,
:func:`crysplugins.datasets.phasing.prepare_source`) at each resolution of ``RESOLUTIONS`` is cut to the
true protein region, standardised (mean 0, SD 1) and summarised by its quantiles at the ``N_QUANTILES``
probabilities (i + ½)/N; the table is the mean over the chains.  Prints the table as the Python constants of
:mod:`crysplugins.crystal.dm.histogram` (paste them there) and writes ``benchmarks/out/dm_histograms.json``.

    OMP_NUM_THREADS=1 python benchmarks/make_dm_histograms.py [--chains 8]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import gemmi
import numpy as np

from crysplugins.crystal.dm import ReflectionSet
from crysplugins.datasets.phasing import prepare_source
from crysplugins.datasets.solvent_windows import pack_chain, read_manifest

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus"
RESOLUTIONS = (1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0)
N_QUANTILES = 60
FAMILIES = ("F02", "F03")


def protein_quantiles(st: gemmi.Structure, d_min: float) -> np.ndarray:
    """Standardised quantiles of the model map's protein-region density at ``d_min`` (Å)."""
    src = prepare_source(st, d_min)
    refl = ReflectionSet(src.cell, src.spacegroup, src.hkl, np.abs(src.f_model), np.ones(len(src.hkl)))
    shape = src.shape
    rho = refl.to_map(src.f_model, shape)
    v = rho[src.mask == 0]
    q = np.quantile(v, (np.arange(N_QUANTILES) + 0.5) / N_QUANTILES)
    return (q - v.mean()) / v.std()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--chains", type=int, default=8, help="chains per family")
    args = ap.parse_args()
    rng = np.random.default_rng(11)
    entries = [e for e in read_manifest(CORPUS) if e.family in FAMILIES and e.space_group == "NA"]
    table: dict[str, list[list[float]]] = {str(d): [] for d in RESOLUTIONS}
    used = []
    for fam in FAMILIES:
        picked = [e for e in entries if e.family == fam]
        for i in rng.permutation(len(picked))[: args.chains]:
            e = picked[i]
            st = gemmi.read_structure(str(e.path))
            st.setup_entities()
            crystal = pack_chain(st, rng)
            if crystal is None:
                continue
            used.append(e.id)
            for d in RESOLUTIONS:
                table[str(d)].append(protein_quantiles(crystal, d).tolist())
            print(e.id, fam, flush=True)
    mean = np.array([np.mean(table[str(d)], axis=0) for d in RESOLUTIONS])
    spread = np.array([np.std(table[str(d)], axis=0) for d in RESOLUTIONS])
    (ROOT / "benchmarks" / "out" / "dm_histograms.json").write_text(json.dumps(
        {"chains": used, "resolutions": RESOLUTIONS, "quantiles": mean.round(4).tolist(),
         "spread": spread.round(4).tolist()}, indent=1))
    print(f"REFERENCE_D = np.array({list(RESOLUTIONS)})")
    print("REFERENCE_Q = np.array([")
    for row in mean:
        print("    [" + ", ".join(f"{x:.3f}" for x in row) + "],")
    print("])")
    print("max spread over chains:", float(spread.max()))


if __name__ == "__main__":
    main()
