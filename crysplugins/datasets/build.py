"""Build a Patterson/density dataset from a folder of PDB/mmCIF files (paper 000, appendix B; issue #3).

Three stages, all resumable:

1. **plan** (``plan.json``): every structure file is read and standardised
   (:mod:`crysplugins.crystal.standardise`), fragments are enumerated (:mod:`.fragments`), families are
   split into train/test (``family_cluster`` of a ``MANIFEST.tsv`` next to the structures or given with
   ``manifest``; without one every structure is its own family), and ``max_examples`` are drawn at random.
   Unreadable files are logged, skipped and counted.
2. **parts** (``parts/<unit>.json`` + ``.npz``): one unit per structure file; each example gets its own
   random generator seeded by (seed, id), so results do not depend on ``workers`` or ``shard``.  A unit
   whose JSON exists is finished and skipped on restart.  ``shard=(i, n)`` builds units i, i+n, ...
3. **finalise** (only when every unit is finished): normalisation constants from the train split's
   minima/maxima (x_norm = clip((x - offset) / scale, -1, 1), so train maps span exactly [-1, 1]),
   shards by (split, map shape), ``index.tsv``, ``partial.npz``, and ``meta.json`` last.

Units: Å, degrees, density e/Å^3, Patterson e^2/Å^3 (before normalisation).
"""
from __future__ import annotations

import csv
import hashlib
import json
import logging
import multiprocessing as mp
import shutil
import sys
import time
import zlib
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

import gemmi
import numpy as np

from crysplugins.crystal.cells import place
from crysplugins.crystal.io import atomic_path, make_mtz, write_mtz
from crysplugins.crystal.maps import crystallographic_f, fft_structure_factors, grid_shape, maps_from_f
from crysplugins.crystal.standardise import B_ISO, RESIDUE_TYPES, read_structure_file
from crysplugins.datasets import store
from crysplugins.datasets.fragments import windows
from crysplugins.datasets.partial import residue_boxes
from crysplugins.errors import CrysError
from crysplugins.progress import ProgressBar

log = logging.getLogger("crysplugins.dataset")
SUFFIXES = (".cif", ".cif.gz", ".mmcif", ".mmcif.gz", ".pdb", ".pdb.gz", ".ent", ".ent.gz")


@dataclass
class BuildConfig:
    structures: str
    out: str
    n_residues: int = 15
    lengths: tuple[int, int] | None = None
    overlap: int = 5
    d_min: float = 1.5
    d_min_range: tuple[float, float] | None = None
    rate: float = 3.0
    rate_range: tuple[float, float] | None = None
    fixed_cell: tuple[float, ...] | None = None
    grid_multiple: int = 8
    max_grid: int | None = None
    test_fraction: float = 0.1
    max_examples: int | None = None
    dtype: str = "float16"
    seed: int = 0
    manifest: str | None = None
    shard_size: int = 512
    test_mtz: bool = True
    min_bin_size: int = 1
    partial_box: int = 24
    patterson_norm: str = "global"
    # run-time only (not part of the dataset's identity)
    workers: int = 1
    shard: tuple[int, int] = (0, 1)
    progress: bool = True
    keep_parts: bool = False

    def key(self) -> str:
        d = self.identity()
        d.pop("structures")
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]

    def identity(self) -> dict:
        """The settings that define the dataset; options added later are left out at their defaults so
        that datasets built before them keep their identity."""
        d = asdict(self)
        for k in ("workers", "shard", "progress", "keep_parts", "out"):
            d.pop(k)
        for k, default in (("lengths", None), ("patterson_norm", "global")):
            if d[k] == default:
                d.pop(k)
        return d


# ------------------------------------------------------------------------------------------ helpers

def structure_files(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name.lower().endswith(SUFFIXES))
    if not files:
        raise CrysError(f"No PDB/mmCIF files (*.cif[.gz], *.pdb[.gz], *.ent[.gz]) in {folder}.")
    return files


def pdb_id(path: Path) -> str:
    return path.name.split(".")[0].upper()


def read_manifest(path: Path) -> dict[str, str]:
    """{PDB id: family_cluster} from a corpus MANIFEST.tsv."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise CrysError(f"The manifest {path} is not a readable tab-separated text file "
                        f"({type(exc).__name__}).") from None
    if not rows or "family_cluster" not in rows[0] or "id" not in rows[0]:
        raise CrysError(f"{path} has no 'id' and 'family_cluster' columns.")
    return {r["id"].upper(): r["family_cluster"] for r in rows}


def split_families(weights: dict[str, int], test_fraction: float, seed: int) -> set[str]:
    """Pick test families at random until they hold ~test_fraction of the weight (never > 1.5x)."""
    total = sum(weights.values())
    target = test_fraction * total
    if test_fraction <= 0 or total == 0:
        return set()
    rng = np.random.default_rng([seed, 7])
    fams = sorted(weights)
    rng.shuffle(fams)
    test: set[str] = set()
    got = 0
    for fam in fams:
        if got >= target:
            break
        w = weights[fam]
        if w == 0 or got + w > 1.5 * target:
            continue
        test.add(fam)
        got += w
    if not test:  # every family too big: take the smallest non-empty one
        fam = min((f for f in fams if weights[f] > 0), key=lambda f: weights[f])
        test.add(fam)
    if len(test) == len([f for f in fams if weights[f] > 0]) and len(test) > 1:
        test.discard(max(test, key=lambda f: weights[f]))
    return test


def _atomic_json(path: Path, obj) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(obj, indent=1, default=str))


def _atomic_npz(path: Path, arrays: dict) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)


# ------------------------------------------------------------------------------------------ stage 1

def fragment_lengths(cfg: BuildConfig) -> list[int]:
    """Every fragment length the dataset holds: ``lengths`` (inclusive range) or just ``n_residues``."""
    if cfg.lengths:
        return list(range(int(cfg.lengths[0]), int(cfg.lengths[1]) + 1))
    return [cfg.n_residues]


def _length_id(fid: str, n: int, several: bool) -> str:
    """Example ids get an ``_L<n>`` suffix when a dataset mixes lengths (the same start residue gives one
    window per length)."""
    return f"{fid}_L{n}" if several else fid


def _scan(args) -> dict:
    path, lengths, overlap = args
    drops: Counter = Counter()
    several = len(lengths) > 1
    found = []
    try:
        st = read_structure_file(path)
        for n in lengths:
            frags = windows(st, pdb_id(Path(path)), n, overlap, drops, cut=False)
            found += [[_length_id(f.id, n, several), f.sequence] for f in frags]
    except Exception as exc:  # corrupt or unreadable file: logged, skipped, counted
        return {"file": str(path), "error": f"{type(exc).__name__}: {exc}"[:300]}
    return {"file": str(path), "windows": found, "drops": dict(drops)}


def _pool(workers: int):
    return mp.get_context("fork").Pool(workers) if workers > 1 else None


def _imap(pool, fn, items):
    if pool is None:
        return map(fn, items)
    return pool.imap_unordered(fn, items, chunksize=1)


def _sample_by_length(examples: list[dict], n: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``n`` examples drawn at random, an equal share per fragment length where a length has
    enough windows (long fragments have ~10x fewer windows than dipeptides; a plain draw would starve
    them).  A single-length dataset reduces to a plain random draw."""
    by_len: dict[int, list[int]] = defaultdict(list)
    for i, e in enumerate(examples):
        by_len[len(e["sequence"])].append(i)
    keep: list[int] = []
    todo = sorted(by_len, key=lambda k: len(by_len[k]))
    for j, length in enumerate(todo):
        share = (n - len(keep)) // (len(todo) - j)
        pool = by_len[length]
        keep += list(rng.choice(pool, min(share, len(pool)), replace=False)) if share < len(pool) else pool
    return np.sort(np.array(keep, dtype=int))


def make_plan(cfg: BuildConfig, bar=None) -> dict:
    out = Path(cfg.out)
    plan_path = out / "plan.json"
    if plan_path.exists():
        plan = json.loads(plan_path.read_text())
        if plan.get("key") == cfg.key():
            return plan
        raise CrysError(f"{out} holds a dataset built with other settings; choose another --out folder.")
    folder = Path(cfg.structures)
    if not folder.is_dir():
        raise CrysError(f"The structures folder {folder} does not exist.")
    files = structure_files(folder)
    manifest_path = Path(cfg.manifest) if cfg.manifest else None
    if manifest_path is None:
        for cand in (folder / "MANIFEST.tsv", folder.parent / "MANIFEST.tsv"):
            if cand.exists():
                manifest_path = cand
                break
    families = read_manifest(manifest_path) if manifest_path else {}
    pool = _pool(cfg.workers)
    results = []
    try:
        for i, r in enumerate(_imap(pool, _scan, [(str(f), fragment_lengths(cfg), cfg.overlap) for f in files])):
            results.append(r)
            if bar:
                bar((i + 1) / len(files), "scanning " + Path(r["file"]).name)
    finally:
        if pool:
            pool.close()
            pool.join()
    results.sort(key=lambda r: r["file"])
    errors = [{"file": r["file"], "error": r["error"]} for r in results if "error" in r]
    for e in errors:
        log.warning("skipped unreadable structure %s (%s)", e["file"], e["error"])
    drops: Counter = Counter()
    examples = []
    for r in results:
        if "error" in r:
            continue
        drops.update(r["drops"])
        pid = pdb_id(Path(r["file"]))
        fam = families.get(pid, pid) if families else pid
        for fid, seq in r["windows"]:
            examples.append({"id": fid, "file": r["file"], "sequence": seq, "family": fam})
    weights: dict[str, int] = Counter(e["family"] for e in examples)
    test_fams = split_families(dict(weights), cfg.test_fraction, cfg.seed)
    for e in examples:
        e["split"] = "test" if e["family"] in test_fams else "train"
    n_found = len(examples)
    if cfg.max_examples and len(examples) > cfg.max_examples:
        keep = _sample_by_length(examples, cfg.max_examples, np.random.default_rng([cfg.seed, 11]))
        drops["not_sampled (--max-examples)"] += len(examples) - len(keep)
        examples = [examples[i] for i in keep]
    plan = {"key": cfg.key(), "config": cfg.identity(), "manifest": str(manifest_path) if manifest_path else None,
            "n_files": len(files), "errors": errors, "windows_found": n_found, "scan_drops": dict(drops),
            "test_families": sorted(test_fams),
            "train_families": sorted(set(weights) - test_fams), "examples": examples}
    out.mkdir(parents=True, exist_ok=True)
    _atomic_json(plan_path, plan)
    return plan


# ------------------------------------------------------------------------------------------ stage 2

def _draw(rng: np.random.Generator, value: float, rng_range) -> float:
    return float(rng.uniform(*rng_range)) if rng_range else float(value)


def example_maps(positions: np.ndarray, elements, cell: gemmi.UnitCell, shape, d_min: float):
    """(F rfft layout, density, Patterson) of atoms in a P1 cell (see crysplugins.crystal.maps)."""
    f = fft_structure_factors((positions, elements), cell, shape, d_min, B_ISO)
    density, patterson = maps_from_f(f, cell, shape)
    return f, density, patterson


def write_test_mtz(folder: Path, example_id: str, f: np.ndarray, cell: gemmi.UnitCell, shape,
                   d_min: float) -> None:
    """``<id>_amplitudes.mtz`` (F, SIGF = 2 % of F; noise-free) and ``<id>_phases.mtz`` (F, PHI degrees)."""
    hkl, vals = crystallographic_f(f, cell, shape, d_min)
    amp = np.abs(vals)
    phi = np.degrees(np.angle(vals))
    p1 = gemmi.SpaceGroup("P 1")
    m1 = make_mtz(cell, p1, hkl, {"F": ("F", amp), "SIGF": ("Q", 0.02 * amp + 1e-3)})
    m2 = make_mtz(cell, p1, hkl, {"F": ("F", amp), "PHI": ("P", phi)})
    for m in (m1, m2):
        m.ensure_asu()
    write_mtz(m1, folder / f"{example_id}_amplitudes.mtz")
    write_mtz(m2, folder / f"{example_id}_phases.mtz")


def _unit_name(path: str) -> str:
    return Path(path).name.split(".")[0] + "-" + hashlib.sha1(path.encode()).hexdigest()[:6]


def _build_unit(args) -> dict:
    cfg_d, path, planned = args
    t_unit = time.process_time()
    cfg = BuildConfig(**cfg_d)
    out = Path(cfg.out)
    name = _unit_name(path)
    drops: Counter = Counter()
    rows: list[dict] = []
    maps: dict[str, dict[str, list]] = defaultdict(lambda: {"patterson": [], "density": []})
    try:
        st = read_structure_file(path)
        lengths = fragment_lengths(cfg)
        frags = {_length_id(f.id, n, len(lengths) > 1): f for n in lengths
                 for f in windows(st, pdb_id(Path(path)), n, cfg.overlap)}
    except Exception as exc:
        return {"unit": name, "file": path, "error": f"{type(exc).__name__}: {exc}"[:300]}
    dtype = np.dtype(cfg.dtype)
    for ex in planned:
        frag = frags.get(ex["id"])
        if frag is None:
            drops["vanished"] += 1
            continue
        try:
            rng = np.random.default_rng([cfg.seed, zlib.crc32(ex["id"].encode())])
            d_min = _draw(rng, cfg.d_min, cfg.d_min_range)
            rate = _draw(rng, cfg.rate, cfg.rate_range)
            spacing = d_min / rate
            masses = np.array([gemmi.Element(e).weight for e in frag.elements])
            if cfg.fixed_cell:
                placed = place(frag.positions, masses, fixed_cell=cfg.fixed_cell)
            else:
                placed = place(frag.positions, masses, rng, bin_len=spacing * cfg.grid_multiple)
            if placed is None:
                drops["clash"] += 1
                continue
            cell = placed.cell
            if cfg.fixed_cell:
                shape = grid_shape(cell, spacing, cfg.grid_multiple)
            else:
                shape = tuple(int(round(x / spacing)) for x in (cell.a, cell.b, cell.c))
            if cfg.max_grid and max(shape) > cfg.max_grid:
                drops[f"too_large (grid > {cfg.max_grid})"] += 1
                continue
            f, density, patterson = example_maps(placed.positions, frag.elements, cell, shape, d_min)
            if ex["split"] == "test" and cfg.test_mtz:
                write_test_mtz(out / "test_mtz", ex["id"], f, cell, shape, d_min)
            key = "x".join(map(str, shape))
            maps[key]["patterson"].append(patterson.astype(dtype))
            maps[key]["density"].append(density.astype(dtype))
            rows.append({"id": ex["id"], "split": ex["split"], "source": Path(path).name, "family": ex["family"],
                         "sequence": frag.sequence, "cell": [round(v, 4) for v in cell.parameters],
                         "shape": list(shape), "d_min": d_min, "key": key,
                         "prow": len(maps[key]["patterson"]) - 1,
                         "pmin": float(patterson.min()), "pmax": float(patterson.max()),
                         "dmin": float(density.min()), "dmax": float(density.max())})
        except Exception as exc:  # one bad fragment never stops the build
            log.warning("example %s failed: %s: %s", ex["id"], type(exc).__name__, exc)
            drops[f"error ({type(exc).__name__})"] += 1
    arrays = {}
    for key, m in maps.items():
        arrays[f"{key}__patterson"] = np.stack(m["patterson"])
        arrays[f"{key}__density"] = np.stack(m["density"])
    parts = out / "parts"
    if arrays:
        _atomic_npz(parts / f"{name}.npz", arrays)
    result = {"unit": name, "file": path, "rows": rows, "drops": dict(drops),
              "cpu_seconds": round(time.process_time() - t_unit, 3)}
    _atomic_json(parts / f"{name}.json", result)  # written last: marks the unit finished
    return {"unit": name, "file": path, "n": len(rows), "drops": dict(drops)}


def build_parts(cfg: BuildConfig, plan: dict, bar=None) -> list[str]:
    """Build the unfinished units of this shard; returns the names of all units of the plan."""
    out = Path(cfg.out)
    (out / "parts").mkdir(parents=True, exist_ok=True)
    if cfg.test_mtz:
        (out / "test_mtz").mkdir(parents=True, exist_ok=True)
    by_file: dict[str, list] = defaultdict(list)
    for ex in plan["examples"]:
        by_file[ex["file"]].append(ex)
    files = sorted(by_file)
    i, n = cfg.shard
    todo = [f for k, f in enumerate(files) if k % n == i and not (out / "parts" / f"{_unit_name(f)}.json").exists()]
    # big units first so that the pool is not left waiting on one at the end
    todo.sort(key=lambda f: -len(by_file[f]))
    cfg_d = asdict(cfg)
    pool = _pool(cfg.workers)
    done_examples = 0
    total = sum(len(by_file[f]) for f in todo)
    try:
        for r in _imap(pool, _build_unit, [(cfg_d, f, by_file[f]) for f in todo]):
            if "error" in r:
                log.warning("skipped unreadable structure %s (%s)", r["file"], r["error"])
                _atomic_json(out / "parts" / f"{r['unit']}.json",
                             {"unit": r["unit"], "file": r["file"], "rows": [], "error": r["error"],
                              "drops": {"unreadable": len(by_file[r["file"]])}})
            done_examples += len(by_file[r["file"]])
            if bar and total:
                bar(done_examples / total, f"{Path(r['file']).name}")
    finally:
        if pool:
            pool.close()
            pool.join()
    return [_unit_name(f) for f in files]


# ------------------------------------------------------------------------------------------ stage 3

def _constants(lo: float, hi: float) -> dict:
    """Zero-preserving constants: offset 0, scale = largest |value| on the train split, so that train maps
    lie in [-1, 1], a zero map stays zero and the maps (F(000) omitted, mean 0) keep mean 0."""
    return {"offset": 0.0, "scale": float(max(abs(lo), abs(hi), 1e-12))}


#: Patterson maps divided by their own origin peak (the map maximum, F(000) omitted): the input then
#: looks alike for 2 and 15 residues and for any absolute scale of the observed amplitudes.
PER_MAP_PATTERSON = {"offset": 0.0, "scale": 1.0, "per_map": "max"}


def _normalise_patterson(p: np.ndarray, norm: dict) -> np.ndarray:
    """(n, nu, nv, nw) Patterson maps -> [-1, 1] with the dataset's constants (or per-map maxima)."""
    if norm.get("per_map") == "max":
        peak = p.reshape(len(p), -1).max(axis=1).clip(min=1e-12)
        return np.clip(p / peak[:, None, None, None], -1, 1)
    return np.clip((p - norm["offset"]) / norm["scale"], -1, 1)


def _padded_sequences(sequences: list[str], lut: dict[str, int], width: int) -> np.ndarray:
    """(n, width) int8 residue indices, right-padded with -1 for fragments shorter than ``width``."""
    out = np.full((len(sequences), width), -1, np.int8)
    for i, seq in enumerate(sequences):
        out[i, :len(seq)] = [lut[c] for c in seq]
    return out


def _normalisation(cfg: BuildConfig, rows: list[dict]) -> dict:
    """Constants from the train split's extremes (all rows when there is no train split)."""
    ref = [r for r in rows if r["split"] == "train"] or rows
    if not ref:
        raise CrysError("No fragment survived the filters; nothing to write (see the drop summary).")
    norm = {"patterson": (PER_MAP_PATTERSON if cfg.patterson_norm == "per_map"
                          else _constants(min(r["pmin"] for r in ref), max(r["pmax"] for r in ref))),
            "density": _constants(min(r["dmin"] for r in ref), max(r["dmax"] for r in ref))}
    norm["partial"] = dict(norm["density"])
    return norm


def _shard_arrays(cfg: BuildConfig, key: str, chunk: list, norm: dict) -> dict[str, np.ndarray]:
    """The arrays of one shard: normalised maps of ``chunk`` ((unit, row) pairs of one map shape)."""
    out, dtype = Path(cfg.out), np.dtype(cfg.dtype)
    pat, den = [], []
    for unit in dict.fromkeys(u for u, _ in chunk):  # each part's arrays are read once per chunk
        rows_u = [r["prow"] for u, r in chunk if u == unit]
        with np.load(out / "parts" / f"{unit}.npz") as z:
            pat.extend(z[f"{key}__patterson"][rows_u])
            den.extend(z[f"{key}__density"][rows_u])
    lut = {c: i for i, c in enumerate(RESIDUE_TYPES)}
    return {"patterson": _normalise_patterson(np.stack(pat).astype(np.float32), norm["patterson"]).astype(dtype),
            "density": np.clip((np.stack(den).astype(np.float32) - norm["density"]["offset"])
                               / norm["density"]["scale"], -1, 1).astype(dtype),
            "ids": np.array([r["id"] for _, r in chunk]),
            "sequence_index": _padded_sequences([r["sequence"] for _, r in chunk], lut, max(fragment_lengths(cfg))),
            "cell": np.array([r["cell"] for _, r in chunk], np.float32),
            "d_min": np.array([r["d_min"] for _, r in chunk], np.float32)}


def _index_row(r: dict, split: str, shard: str, row: int) -> dict:
    a, b, c, al, be, ga = r["cell"]
    nu, nv, nw = r["shape"]
    return {"id": r["id"], "split": split, "shard": shard, "row": row, "source": r["source"],
            "family": r["family"], "sequence": r["sequence"], "a": a, "b": b, "c": c, "alpha": al, "beta": be,
            "gamma": ga, "nu": nu, "nv": nv, "nw": nw, "d_min": r["d_min"]}


def write_shards(cfg: BuildConfig, parts: list[dict], norm: dict, drops: Counter) -> tuple[list[dict], Counter]:
    """Shards by (split, map shape) of ``shard_size`` examples; returns (index rows, examples per shape).
    Training bins smaller than ``min_bin_size`` are dropped and counted in ``drops``."""
    groups: dict[tuple[str, str], list] = defaultdict(list)
    for p in parts:
        for r in p["rows"]:
            groups[(r["split"], r["key"])].append((p["unit"], r))
    shard_dir = Path(cfg.out) / "shards"
    shard_dir.mkdir(exist_ok=True)
    index: list[dict] = []
    shapes_hist: Counter = Counter()
    for (split, key), members in sorted(groups.items()):
        if split == "train" and len(members) < cfg.min_bin_size:
            drops[f"small_bin (< {cfg.min_bin_size})"] += len(members)
            continue
        for k in range(0, len(members), cfg.shard_size):
            chunk = members[k:k + cfg.shard_size]
            name = f"{split}-{key}-{k // cfg.shard_size}.npz"
            _atomic_npz(shard_dir / name, _shard_arrays(cfg, key, chunk, norm))
            index += [_index_row(r, split, name, i) for i, (_, r) in enumerate(chunk)]
            shapes_hist[f"{split}:{key}"] += len(chunk)
    return index, shapes_hist


def finalise(cfg: BuildConfig, plan: dict, units: list[str], elapsed: float = 0.0) -> dict:
    """Stage 3: normalisation, shards, ``index.tsv``, ``partial.npz`` and ``meta.json`` (last)."""
    out = Path(cfg.out)
    parts = [json.loads((out / "parts" / f"{u}.json").read_text()) for u in units]
    drops: Counter = Counter(plan["scan_drops"])
    for p in parts:
        drops.update(p["drops"])
    norm = _normalisation(cfg, [r for p in parts for r in p["rows"]])
    index, shapes_hist = write_shards(cfg, parts, norm, drops)
    store.write_index(out / "index.tsv", index)
    # partial structures at the dataset's (mean) spacing
    d_mid = float(np.mean(cfg.d_min_range)) if cfg.d_min_range else cfg.d_min
    r_mid = float(np.mean(cfg.rate_range)) if cfg.rate_range else cfg.rate
    boxes = residue_boxes(d_mid / r_mid, cfg.partial_box, d_min=d_mid)
    boxes = np.clip((boxes - norm["partial"]["offset"]) / norm["partial"]["scale"], -1, 1).astype(np.float32)
    _atomic_npz(out / "partial.npz", {"boxes": boxes, "residue_types": np.array(list(RESIDUE_TYPES))})
    # test MTZs of examples that did not survive (clash) were never written; nothing to clean
    splits = Counter(r["split"] for r in index)
    fams = {"train": sorted({r["family"] for r in index if r["split"] == "train"}),
            "test": sorted({r["family"] for r in index if r["split"] == "test"})}
    meta = {
        "format": store.FORMAT,
        "n_residues": list(cfg.lengths) if cfg.lengths else cfg.n_residues,
        "d_min": list(cfg.d_min_range) if cfg.d_min_range else cfg.d_min,
        "sampling_rate": list(cfg.rate_range) if cfg.rate_range else cfg.rate,
        "fixed_cell": list(cfg.fixed_cell) if cfg.fixed_cell else None,
        "normalisation": norm, "partial_box": cfg.partial_box, "partial_spacing": d_mid / r_mid,
        "residue_types": RESIDUE_TYPES, "dtype": cfg.dtype,
        "splits": {"train": splits.get("train", 0), "test": splits.get("test", 0)},
        "families": fams, "shapes": dict(sorted(shapes_hist.items())),
        "build": {"config": cfg.identity(), "structure_files": plan["n_files"],
                  "unreadable_files": plan["errors"], "windows_found": plan["windows_found"],
                  "dropped": dict(drops),
                  "seconds": round(elapsed, 1),  # wall time of the last session (a resumed build restarts it)
                  "unit_cpu_seconds": round(sum(p.get("cpu_seconds", 0.0) for p in parts), 1),
                  "gemmi": gemmi.__version__, "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())},
    }
    _atomic_json(out / "meta.json", meta)
    if not cfg.keep_parts:
        shutil.rmtree(out / "parts", ignore_errors=True)
    return meta


def build(cfg: BuildConfig) -> dict:
    """Run all stages (or, with ``shard`` i/n, n > 1, plan + this shard's units; finalise when all exist).

    Returns a summary dict (also what ``crysplugins dataset build`` prints).
    """
    out = Path(cfg.out)
    if (out / "meta.json").exists():
        meta = json.loads((out / "meta.json").read_text())
        if meta.get("build", {}).get("config") == cfg.identity():
            return {"status": "already built", "out": str(out), "splits": meta["splits"]}
        raise CrysError(f"{out} already holds a finished dataset built with other settings.")
    t0 = time.monotonic()
    enabled = cfg.progress and sys.stderr.isatty()
    bar = ProgressBar("plan ", enabled)
    plan = make_plan(cfg, bar)
    bar.close()
    t_plan = time.monotonic() - t0
    bar = ProgressBar("maps ", enabled)
    units = build_parts(cfg, plan, bar)
    bar.close()
    t_parts = time.monotonic() - t0 - t_plan
    missing = [u for u in units if not (out / "parts" / f"{u}.json").exists()]
    summary = {"out": str(out), "structure_files": plan["n_files"], "unreadable_files": len(plan["errors"]),
               "planned_examples": len(plan["examples"])}
    if missing:
        summary.update(status="partial", units_missing=len(missing),
                       note="run again without --shard (or after all shards finished) to finalise")
        return summary
    elapsed = time.monotonic() - t0
    meta = finalise(cfg, plan, units, elapsed)
    meta["build"]["stage_seconds"] = {"plan": round(t_plan, 1), "parts": round(t_parts, 1),
                                      "finalise": round(time.monotonic() - t0 - t_plan - t_parts, 1)}
    _atomic_json(out / "meta.json", meta)
    summary.update(status="done", splits=meta["splits"], shapes=meta["shapes"], dropped=meta["build"]["dropped"],
                   unreadable=[e["file"] for e in plan["errors"]], seconds=round(time.monotonic() - t0, 1))
    return summary
