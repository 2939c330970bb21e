"""Benchmark: classical charge flipping (and, when installed, the transformer with/without refinement) on
fragment crystals from held-out family clusters.

Reads ``../shared/corpus`` (i.e. /work/shared/corpus, relative to the repository) unless ``--dataset``
is given.  Two sources of test examples:

* default: fragments of 2, 5, 10 and 15 residues cut (``crysplugins.datasets.fragments.windows``) from
  corpus entries of the held-out families (default F03 F06 F07 F12 F14, the project's benchmark families),
  placed in P1 cells as in the paper's appendix B (``crysplugins.crystal.cells.place``: random angles,
  contacts > 3.45 Å, centre of mass at the cell centre), B = 20 Å², complete noise-free amplitudes to
  1.5, 2.0 and 2.25 Å computed by gemmi (DensityCalculatorX + FFT), written as the dataset writes its
  test examples (``<id>_amplitudes.mtz`` F, SIGF = 2 % F; ``<id>_phases.mtz`` F, PHI; ``<id>.seq``);
* ``--dataset DIR``: a dataset's own test split (``test_mtz/``), i.e. the transformer's held-out families.

Every predictor runs through ``crysplugins.evaluation.compare.evaluate`` (the engine of ``crysplugins
evaluate``): ``charge-flipping`` always; ``patterson-density`` and ``patterson-density:refine=yes``
(its prediction alone, the same prediction refined by the in-process density modification, reported as
``patterson-density + density-modification``, and ``patterson-density:cycles=1`` when it has that
recycling input) automatically when that predictor is installed with a model.

Writes the figure ``benchmarks/out/charge_flipping.json`` (``charge_flipping_dataset.json`` with
``--dataset``): one summary row per predictor, fragment length and resolution; the MTZs and every record go
to ``--out`` (not committed).

    OMP_NUM_THREADS=1 python benchmarks/bench_charge_flipping.py --per-cell 6
    OMP_NUM_THREADS=1 python benchmarks/bench_charge_flipping.py --dataset data_build/dipeptide --limit 100 \\
        --transformer patterson-density:cycles=0 --refine-option none
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import gemmi
import numpy as np

from crysplugins.crystal import io
from crysplugins.crystal.cells import place
from crysplugins.datasets.fragments import windows
from crysplugins.errors import CrysError
from crysplugins.evaluation import compare
from crysplugins.evaluation.compare import Example
from crysplugins.host import default_host
from figure_output import OUT, write_figure

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus"


def held_out_structures(corpus: Path, families: list[str]) -> list[tuple[str, Path, str]]:
    rows = []
    with open(corpus / "MANIFEST.tsv", newline="") as fh:
        for r in csv.DictReader(fh, delimiter="\t"):
            if r["family_cluster"] in families:
                rows.append((r["id"], corpus / r["file"], r["family_cluster"]))
    return rows


def structure_factors(positions: np.ndarray, elements, cell: gemmi.UnitCell, d_min: float):
    """hkl (one of each Friedel pair, no 000) and complex F (electrons), B = 20 Å², via gemmi."""
    st = gemmi.Structure()
    st.cell = cell
    st.spacegroup_hm = "P 1"
    model = gemmi.Model("1")
    chain = gemmi.Chain("A")
    res = gemmi.Residue()
    res.name, res.seqid = "UNK", gemmi.SeqId(1, " ")
    for p, e in zip(positions, elements):
        a = gemmi.Atom()
        a.name, a.element, a.pos, a.occ, a.b_iso = e, gemmi.Element(e), gemmi.Position(*p), 1.0, 20.0
        res.add_atom(a)
    chain.add_residue(res)
    model.add_chain(chain)
    st.add_model(model)
    dc = gemmi.DensityCalculatorX()
    dc.d_min = d_min
    dc.rate = 1.5
    dc.grid.setup_from(st)
    dc.put_model_density_on_grid(st[0])
    asu = gemmi.transform_map_to_f_phi(dc.grid, half_l=True).prepare_asu_data(dmin=d_min)
    return np.array(asu.miller_array), np.array(asu.value_array)


def make_examples(out: Path, lengths: list[int], resolutions: list[float], per_cell: int, families: list[str],
                  seed: int) -> list:

    rng = np.random.default_rng(seed)
    sources = held_out_structures(CORPUS, families)
    out.mkdir(parents=True, exist_ok=True)
    examples = []
    for n in lengths:
        pool = []
        for pid, path, fam in sources:
            st = gemmi.read_structure(str(path))
            st.setup_entities()
            pool += [(fam, f) for f in windows(st, pid, n)]
        order = rng.permutation(len(pool))  # the same fragments at every resolution (paired comparison)
        for d_min in resolutions:
            made = 0
            for i in order:
                if made >= per_cell:
                    break
                fam, frag = pool[i]
                masses = np.array([gemmi.Element(e).weight for e in frag.elements])
                pl = place(frag.positions, masses, rng)
                if pl is None:
                    continue
                hkl, f = structure_factors(pl.positions, frag.elements, pl.cell, d_min)
                ex_id = f"{frag.id}_{n}r_{d_min:.2f}A".replace(".", "p")
                amp, phi = np.abs(f), np.degrees(np.angle(f))
                p1 = gemmi.SpaceGroup("P 1")
                io.write_mtz(io.make_mtz(pl.cell, p1, hkl, {"F": ("F", amp), "SIGF": ("Q", 0.02 * amp + 1e-3)}),
                             out / f"{ex_id}_amplitudes.mtz")
                io.write_mtz(io.make_mtz(pl.cell, p1, hkl, {"F": ("F", amp), "PHI": ("P", phi)}),
                             out / f"{ex_id}_phases.mtz")
                (out / f"{ex_id}.seq").write_text(frag.sequence + "\n")
                examples.append(Example(ex_id, out / f"{ex_id}_amplitudes.mtz", out / f"{ex_id}_phases.mtz",
                                        frag.sequence, d_min, n))
                made += 1
    return examples


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=None, help="folder for the MTZs and records (default benchmarks/out/FIGURE)")
    p.add_argument("--figure", default=None,
                   help="figure name (default charge_flipping, or charge_flipping_dataset with --dataset)")
    p.add_argument("--dataset", default=None, help="use this dataset's test split instead of corpus fragments")
    p.add_argument("--lengths", default="2,5,10,15")
    p.add_argument("--resolutions", default="1.5,2.0,2.25")
    p.add_argument("--per-cell", type=int, default=8)
    p.add_argument("--limit", type=int, default=None, help="with --dataset: at most N test examples")
    p.add_argument("--families", default="F03,F06,F07,F12,F14")
    p.add_argument("--seed", type=int, default=2026)
    p.add_argument("--predictors", default=None,
                   help="semicolon-separated labels (default: charge-flipping, plus patterson-density and "
                        "patterson-density:refine=yes when it is installed with a model)")
    p.add_argument("--transformer", default="patterson-density",
                   help="the transformer's label, run alone and followed by density modification (e.g. "
                        "patterson-density:cycles=0 for the first model alone)")
    p.add_argument("--refine-option", default="cycles=1",
                   help="KEY=VALUE of patterson-density's own refinement/recycling input, run as one more "
                        "label (default cycles=1; 'none' for no such label)")
    args = p.parse_args()

    figure = args.figure or ("charge_flipping_dataset" if args.dataset else "charge_flipping")
    out = Path(args.out) if args.out else OUT / figure
    out.mkdir(parents=True, exist_ok=True)
    host = default_host()
    refine_labels: list = []  # predictors evaluated with and without --then-refine density-modification
    if args.predictors:
        labels = [compare.PredictorLabel.parse(x) for x in args.predictors.split(";")]
    else:
        labels = [compare.PredictorLabel.parse("charge-flipping")]
        if "patterson-density" in host.predictors:
            pd = host.get("patterson-density")
            card = pd.model_card() if callable(getattr(pd, "model_card", None)) else None
            if card is None:
                print("note: patterson-density is installed but has no model (model_card() is None); skipped",
                      flush=True)
            else:
                # the transformer, plus the same prediction refined by the in-process density modification
                # (reported as "<label> + density-modification")
                refine_labels.append(compare.PredictorLabel.parse(args.transformer))
                names = {s.name for s in pd.inputs}
                if args.refine_option.split("=")[0] in names:  # and its own refinement input, if any
                    labels.append(compare.PredictorLabel.parse(f"patterson-density:{args.refine_option}"))
    t0 = time.monotonic()
    if args.dataset:
        examples = compare.examples_from_dataset(args.dataset, "test")
        if args.limit and args.limit < len(examples):  # a random sample across the held-out families
            pick = np.sort(np.random.default_rng(args.seed).choice(len(examples), args.limit, replace=False))
            examples = [examples[i] for i in pick]
        for ex in examples:
            ex.n_residues = len(ex.sequence) if ex.sequence else None
    else:
        examples = make_examples(out / "mtz", [int(x) for x in args.lengths.split(",")],
                                 [float(x) for x in args.resolutions.split(",")], args.per_cell,
                                 args.families.split(","), args.seed)
    if not args.predictors:  # drop automatically added variants that cannot run at all (said, not hidden)
        for lab in [l for l in labels if l.name != "charge-flipping"]:
            try:
                compare.run_one(host, lab, examples[0])
            except CrysError as exc:
                print(f"note: {lab.label} skipped: {exc}", flush=True)
                labels.remove(lab)
    print(f"{len(examples)} examples in {time.monotonic() - t0:.1f} s; predictors: {[l.label for l in labels]}"
          f" and, with + density-modification: {[l.label for l in refine_labels]}", flush=True)
    by_id = {ex.id: ex for ex in examples}
    say = lambda m: print(m, flush=True)  # noqa: E731
    records = compare.evaluate(host, labels, examples, progress=say)
    if refine_labels:
        records += compare.evaluate(host, refine_labels, examples, progress=say, refiners=["density-modification"])
    for r in records:
        r["n_residues"] = by_id[r["id"]].n_residues
        r["group"] = f"{r['predictor']} | {str(r['n_residues']):>2} res"
    # one summary row per predictor, fragment length and resolution
    grouped = [dict(r, predictor=r["group"]) for r in records]
    rows = compare.summarise(grouped)
    source = args.dataset or f"corpus families {args.families}"
    meta = {"examples": len(examples), "source": source, "seconds": round(time.monotonic() - t0, 1)}
    files = compare.write_results(out, records, rows, meta)
    print(compare.table_text(rows))
    print(json.dumps(files, indent=2))
    keep = ("predictor", "d_min", "n", "success_rate", "median_phase_error", "mean_phase_error", "median_pearson",
            "mean_pearson", "median_seconds", "errors")
    write_figure(figure, {"source": source, "examples": len(examples),
                          "rows": [{k: r[k] for k in keep} for r in rows]}, time.monotonic() - t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
