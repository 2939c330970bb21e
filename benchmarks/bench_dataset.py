"""Throughput of the dataset builder.  Reads ../shared/corpus (beside the repository) unless --corpus is given.

Part 1 (``--stages``): per-example CPU time (process time, so sharing the machine does not inflate it) of each stage for N-residue fragments at d_min (in-process,
one core): read + standardise, fragment cutting, cell search, structure factors + density + Patterson
by FFT (the builder's method) and, for comparison, structure factors by direct summation over atoms
(gemmi StructureFactorCalculatorX, then the same two inverse FFTs).

Part 2 (``--end-to-end``): wall time of ``crysplugins dataset build`` (read -> fragments -> cells ->
maps -> shards, test MTZs included) with ``--workers`` 1 and 2, examples per second and per core, and
the CPU seconds (user + sys of the build and its workers) per example, which is the fair per-core figure
on a shared machine where a process does not get a whole core.

Writes ``benchmarks/out/dataset_throughput.json`` (both parts, whichever ran).  Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_dataset.py --stages --end-to-end --residues 15 --workers 1
    OMP_NUM_THREADS=1 python benchmarks/bench_dataset.py --end-to-end --residues 15 --max-examples 2000
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import gemmi
import numpy as np

from crysplugins.crystal import maps
from crysplugins.crystal.cells import place
from crysplugins.crystal.standardise import read_structure_file
from crysplugins.datasets.fragments import windows
from figure_output import write_figure

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = REPO.parent / "shared" / "corpus"


def atoms_model(positions: np.ndarray, elements, b_iso: float) -> gemmi.Model:
    """A gemmi model of bare atoms (one residue), for gemmi's direct-summation structure factors."""
    model, chain, res = gemmi.Model("1"), gemmi.Chain("A"), gemmi.Residue()
    res.name = "UNK"
    for i, (p, el) in enumerate(zip(positions, elements)):
        at = gemmi.Atom()
        at.name, at.element, at.pos = f"X{i}", gemmi.Element(el), gemmi.Position(*map(float, p))
        at.b_iso, at.occ = b_iso, 1.0
        res.add_atom(at)
    chain.add_residue(res)
    model.add_chain(chain)
    return model


def stages(corpus: Path, residues: int, n: int, d_min: float, rate: float) -> dict:
    files = sorted((corpus / "structures").glob("*.cif.gz"))
    rng = np.random.default_rng(0)
    t = {"read": 0.0, "fragments": 0.0, "cell": 0.0, "maps_fft": 0.0}
    frags = []
    t0 = time.process_time()
    n_files = 0
    for f in rng.permutation(files):
        a = time.process_time()
        st = read_structure_file(f)
        b = time.process_time()
        fr = windows(st, f.name[:4], residues, 5)
        c = time.process_time()
        t["read"] += b - a
        t["fragments"] += c - b
        frags += fr
        n_files += 1
        if len(frags) >= n:
            break
    per_file_read = t["read"] / n_files
    n_frag_total = len(frags)
    frags = frags[:n]
    spacing = d_min / rate
    placed = []
    a = time.process_time()
    for fr in frags:
        m = np.array([gemmi.Element(e).weight for e in fr.elements])
        placed.append(place(fr.positions, m, rng, bin_len=spacing * 8))
    t["cell"] = time.process_time() - a
    shapes = []
    a = time.process_time()
    for fr, p in zip(frags, placed):
        shape = tuple(int(round(x / spacing)) for x in (p.cell.a, p.cell.b, p.cell.c))
        shapes.append(shape)
        f = maps.fft_structure_factors((p.positions, fr.elements), p.cell, shape, d_min)
        maps.maps_from_f(f, p.cell, shape)
    t["maps_fft"] = time.process_time() - a
    # direct summation on a subset (slow)
    k = min(10, len(frags))
    a = time.process_time()
    nrefl = 0
    for fr, p, shape in zip(frags[:k], placed[:k], shapes[:k]):
        model = atoms_model(p.positions, fr.elements, 20.0)
        f = maps.fft_structure_factors(model, p.cell, shape, d_min)  # only for the hkl list
        hkl, _ = maps.crystallographic_f(f, p.cell, shape, d_min)
        calc = gemmi.StructureFactorCalculatorX(p.cell)
        vals = np.array([calc.calculate_sf_from_model(model, [int(x) for x in r]) for r in hkl])
        nrefl += len(hkl)
        # place F and its Friedel mates on the grid and transform (same as the FFT path)
        g = np.zeros(shape[:2] + (shape[2] // 2 + 1,), complex)
        nvox = np.prod(shape)
        g[hkl[:, 0] % shape[0], hkl[:, 1] % shape[1], hkl[:, 2]] = np.conj(vals) * nvox / p.cell.volume
        maps.maps_from_f(g, p.cell, shape)
    t_direct = (time.process_time() - a) / k
    n = len(frags)
    natoms = np.mean([len(fr.elements) for fr in frags])
    out = {
        "residues": residues, "d_min": d_min, "rate": rate, "examples": n, "mean_atoms": round(float(natoms), 1),
        "mean_voxels": int(np.mean([np.prod(s) for s in shapes])),
        "cpu_ms_per_example": {
            "read+standardise (per example, amortised)": round(1000 * t["read"] / max(n_frag_total, 1), 3),
            "fragments": round(1000 * t["fragments"] / max(n_frag_total, 1), 3),
            "cell search": round(1000 * t["cell"] / n, 2),
            "maps (atoms on grid + FFT, builder)": round(1000 * t["maps_fft"] / n, 2),
            "maps (direct summation SF + FFT)": round(1000 * t_direct, 1),
        },
        "read_ms_per_file": round(1000 * per_file_read, 1),
        "direct_summation_reflections_per_example": int(nrefl / k),
        "loadavg": os.getloadavg(),
    }
    core = t["cell"] / n + t["maps_fft"] / n
    out["examples_per_s_cell+maps"] = round(1 / core, 1)
    return out


def end_to_end(corpus: Path, residues: int, max_examples: int | None, workers: list[int], d_min: float,
               keep: Path | None) -> list[dict]:
    res = []
    for w in workers:
        tmp = Path(tempfile.mkdtemp(prefix="bench_ds_"))
        out = tmp / "ds"
        cmd = [sys.executable, "-m", "crysplugins.cli", "dataset", "build", "--structures",
               str(corpus / "structures"), "--out", str(out), "--residues", str(residues), "--d-min",
               str(d_min), "--workers", str(w), "--quiet"]
        if max_examples:
            cmd += ["--max-examples", str(max_examples)]
        env = dict(os.environ, OMP_NUM_THREADS="1")
        load0 = os.getloadavg()
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        a = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        wall = time.perf_counter() - a
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
        if proc.returncode != 0:
            raise SystemExit(proc.stderr)
        meta = json.loads((out / "meta.json").read_text())
        n = meta["splits"]["train"] + meta["splits"]["test"]
        size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
        res.append({"workers": w, "examples": n, "wall_s": round(wall, 1), "examples_per_s": round(n / wall, 1),
                    "examples_per_s_per_core": round(n / wall / w, 1), "cpu_s": round(cpu, 1),
                    "examples_per_cpu_s": round(n / cpu, 1), "stage_seconds": meta["build"].get("stage_seconds"),
                    "dataset_MB": round(size / 1e6, 1),
                    "splits": meta["splits"], "loadavg_before": load0, "loadavg_after": os.getloadavg(),
                    "command": " ".join(cmd[1:])})
        print(json.dumps(res[-1]), flush=True)
        if keep and w == workers[-1]:
            shutil.rmtree(keep, ignore_errors=True)
            shutil.move(str(out), keep)
        shutil.rmtree(tmp, ignore_errors=True)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    ap.add_argument("--residues", type=int, default=15)
    ap.add_argument("--d-min", type=float, default=1.5)
    ap.add_argument("--rate", type=float, default=3.0)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--stages", action="store_true")
    ap.add_argument("--end-to-end", action="store_true")
    ap.add_argument("--max-examples", type=int)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--keep", type=Path, help="move the last end-to-end dataset here")
    args = ap.parse_args()
    results: dict = {}
    t0 = time.perf_counter()
    if args.stages:
        results["stages"] = stages(args.corpus, args.residues, args.n, args.d_min, args.rate)
        print(json.dumps(results["stages"], indent=1))
    if args.end_to_end:
        results["end_to_end"] = end_to_end(args.corpus, args.residues, args.max_examples, args.workers, args.d_min,
                                           args.keep)
    if results:
        write_figure("dataset_throughput", results, time.perf_counter() - t0)


if __name__ == "__main__":
    main()
