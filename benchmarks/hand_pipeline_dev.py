"""Development set for the hand of fragment-phasing's solutions: real solved maps of train-family fragments.

The hand cards are fitted and tuned on true maps with simulated von Mises phase errors (0, 20, 35°).  The maps
fragment-phasing reads the hand off are density-modified charge-flipping winners, often at 40–58° at
2.0–2.5 Å, where the benchmark's wrong hand calls sit.  This builds maps of that kind from the train families
of ``data_build/frag2-15`` (never a test family, never a benchmark fragment), so a hand model can be chosen on them.

Step ``collect``: every ``--every``-th train example with d_min ≥ ``--min-d`` Å; its amplitudes are the true
density's to d_min; :func:`crysplugins.runtime.fragment_phasing.solve` (charge flipping, no network: the
benchmark's winners at these resolutions are charge-flipping starts or their consensus) picks the winner, whose
density-modified map is centred as :func:`crysplugins.runtime.fragment_phasing.place` centres it.  Stored in
``data_build/hand_pipeline_dev/<id>.npz``: the centred map, cell, sequence, the invariant phase error and
whether the map is on the wrong hand (origin/hand search of its phases against the true ones: the label only).

Step ``evaluate``: the accuracy of hand cards on the solved maps (< 60°), by length and resolution, written to
``benchmarks/out/hand_pipeline_dev.json``.

    OMP_NUM_THREADS=1 python benchmarks/hand_pipeline_dev.py collect --limit 260 --part 0 --parts 2   (and --part 1)
    OMP_NUM_THREADS=1 python benchmarks/hand_pipeline_dev.py collect --offset 20                    (a second draw)
    OMP_NUM_THREADS=1 python benchmarks/hand_pipeline_dev.py evaluate --models fragment_phasing_hand,fragment_hand_gated
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data_build" / "frag2-15"
STORE = REPO / "data_build" / "hand_pipeline_dev"
OUT = REPO / "benchmarks" / "out" / "hand_pipeline_dev.json"
SUCCESS = 60.0


def dev_rows(data: Path, every: int, min_d: float, offset: int = 0) -> list[tuple[str, int]]:
    """(shard name, row) of every ``every``-th train example with d_min ≥ ``min_d`` (from the ``offset``-th), in
    shard order."""
    from crysplugins.datasets.store import open_dataset

    out, k = [], 0
    for shard in open_dataset(data).shards("train"):
        d_min = shard.load()["d_min"]
        for row in range(shard.n):
            if float(d_min[row]) >= min_d:
                if k % every == offset:
                    out.append((shard.path.name, row))
                k += 1
    return out


@dataclass
class DevFragment:
    """One development fragment: ``ident`` (``<id>_<d_min>``), cell, sequence, d_min (Å), P1 hkl, |F| and true
    phases (degrees) of its density."""

    ident: str
    cell: Any
    sequence: str
    d_min: float
    hkl: np.ndarray
    f: np.ndarray
    phi_true: np.ndarray


def drawn_rows(data: Path = DATA) -> list[tuple[str, int]]:
    """The rows of the two draws the development set was collected from (``collect --limit 260`` and
    ``collect --offset 20``, stopped at 272 rows), in that order."""
    return dev_rows(data, 40, 1.9, 0)[:260] + dev_rows(data, 40, 1.9, 20)[:272]


def dev_fragments(data: Path, rows: list[tuple[str, int]], skip: Callable[[str], bool] = lambda ident: False
                  ) -> Iterator[DevFragment]:
    """The fragments of ``rows`` (from :func:`dev_rows`), in order, except those whose ident ``skip`` names."""
    import gemmi

    from crysplugins.datasets.store import open_dataset
    from crysplugins.datasets.templates import true_reflections

    ds = open_dataset(data)
    norm = ds.meta["normalisation"]["density"]
    shards = {s.path.name: s for s in ds.shards("train")}
    loaded: dict[str, dict] = {}
    for name, row in rows:
        arrays = loaded.setdefault(name, shards[name].load())
        d_min = float(arrays["d_min"][row])
        ident = f"{arrays['ids'][row]}_{d_min:.3f}"
        if skip(ident):
            continue
        cell = gemmi.UnitCell(*[float(v) for v in arrays["cell"][row]])
        hkl, f_true = true_reflections(arrays["density"][row], norm, cell, d_min)
        keep = np.abs(f_true) > 0
        yield DevFragment(ident, cell, ds.sequences(arrays["sequence_index"][row:row + 1])[0], d_min, hkl[keep],
                          np.abs(f_true[keep]), np.degrees(np.angle(f_true[keep])))


def collect(data: Path, every: int, min_d: float, part: int, parts: int, limit: int, offset: int = 0) -> None:
    from crysplugins.crystal.maps import centre_density
    from crysplugins.crystal.origin import search_origin_hand
    from crysplugins.runtime import fragment_phasing as fp

    STORE.mkdir(parents=True, exist_ok=True)
    rows = [r for k, r in enumerate(dev_rows(data, every, min_d, offset)[:limit]) if k % parts == part]
    for frag in dev_fragments(data, rows, skip=lambda ident: (STORE / f"{ident}.npz").exists()):
        out = STORE / f"{frag.ident}.npz"
        t0 = time.monotonic()
        result = fp.solve(fp.make_setup(frag.cell, frag.hkl, frag.f, frag.sequence))
        refined = result.winner.refined
        fit = search_origin_hand(frag.hkl, frag.f, frag.phi_true, refined.phases)
        rho, _ = centre_density(np.asarray(refined.map.array, dtype=np.float64), cell=frag.cell)
        tmp = out.with_suffix(".part.npz")  # renamed when whole: a killed run leaves no half-written map
        np.savez(tmp, map=rho.astype(np.float32), cell=np.array(frag.cell.parameters), sequence=frag.sequence,
                 n_residues=len(frag.sequence), d_min=frag.d_min, phase_error=fit.phase_error,
                 wrong_hand=fit.inverted, dm_cc=refined.score, winner=result.winner.name,
                 seconds=time.monotonic() - t0)
        tmp.replace(out)
        print(f"{out.stem}: {len(frag.sequence)} res {frag.d_min:.2f} A, {fit.phase_error:.1f} deg, "
              f"wrong hand {fit.inverted}, {time.monotonic() - t0:.1f} s", flush=True)


def load_maps() -> list[dict]:
    maps = []
    for path in sorted(p for p in STORE.glob("*.npz") if not p.name.endswith(".part.npz")):
        with np.load(path, allow_pickle=False) as z:
            maps.append({"id": path.stem, **{k: z[k] for k in z.files}})
    return maps


def accuracy(rows: list[dict], key: str) -> dict:
    """Accuracy of ``key`` (the call is right) on ``rows``, overall and by length and resolution."""
    def share(sub: list[dict]) -> dict:
        return {"n": len(sub), "right": int(sum(r[key] for r in sub))}

    lengths = {"2-3": (2, 3), "4-6": (4, 6), "7-11": (7, 11), "12-15": (12, 15)}
    return {"all": share(rows),
            "by_length": {k: share([r for r in rows if lo <= r["n_residues"] <= hi])
                          for k, (lo, hi) in lengths.items()},
            "by_d_min": {k: share([r for r in rows if lo <= r["d_min"] < hi])
                         for k, (lo, hi) in {"<2.0": (0, 2.0), "2.0-2.25": (2.0, 2.25), ">=2.25": (2.25, 9)}.items()}}


def evaluate(models: list[str]) -> dict:
    from crysplugins.runtime.hand import hand_logits

    rows, maps = [], load_maps()
    for m in maps:
        if float(m["phase_error"]) >= SUCCESS:
            continue
        row = {"id": m["id"], "n_residues": int(m["n_residues"]), "d_min": float(m["d_min"]),
               "phase_error": round(float(m["phase_error"]), 2), "wrong_hand": bool(m["wrong_hand"])}
        for model in models:
            logit = float(hand_logits(m["map"][None].astype(np.float64), model, cells=[m["cell"]],
                                      sequences=[str(m["sequence"])])[0])
            row[model] = round(logit, 4)
            row[f"{model} right"] = (logit > 0) == row["wrong_hand"]
        rows.append(row)
        print(json.dumps(row), flush=True)
    return {"solved_maps": len(rows), "maps": len(maps),
            "models": {model: accuracy(rows, f"{model} right") for model in models}, "rows": rows}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("step", choices=("collect", "evaluate"))
    p.add_argument("--data", default=str(DATA))
    p.add_argument("--every", type=int, default=40, help="every N-th train example with d_min >= --min-d")
    p.add_argument("--min-d", type=float, default=1.9, help="lowest d_min (Å) taken")
    p.add_argument("--offset", type=int, default=0, help="start at the N-th such example (another draw: 0 < N < every)")
    p.add_argument("--limit", type=int, default=400, help="at most this many fragments")
    p.add_argument("--part", type=int, default=0)
    p.add_argument("--parts", type=int, default=1)
    p.add_argument("--models", default="fragment_hand_atoms,fragment_hand_gated")
    p.add_argument("--out", default=str(OUT))
    a = p.parse_args()
    if a.step == "collect":
        collect(Path(a.data), a.every, a.min_d, a.part, a.parts, a.limit, a.offset)
        return 0
    result = evaluate([m for m in a.models.split(",") if m])
    Path(a.out).write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v["all"] for k, v in result["models"].items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
