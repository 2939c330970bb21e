"""Training data for the solvent U-net: crystals, phasing maps and 48³ windows (Skubák 2024, 2.1-2.2).

Crystals come from two places:

* corpus entries with a real cell and space group (``MANIFEST.tsv`` space_group != NA), as deposited;
* single chains packed into cells of our own (:func:`pack_chain`): a random orientation, a space group
  drawn from P 21 21 21, P 1 21 1 and C 1 2 1, a cell sized for a solvent fraction drawn uniformly from
  ``solvent_range`` (default 40-60 %; real crystals span about 25-75 %, Matthews 1968), and a
  coarse clash check on CA atoms with gemmi's ``ContactSearch`` over symmetry mates (CA-CA >= 4 Å); the
  cell grows until no clash remains.

:class:`WindowSampler` draws windows of ``window``³ voxels at random positions of the periodic cell
(wrapping), augments them by flips about a random set of axes and a 90° rotation in a random plane, and
redraws each crystal's phasing map (new phase errors, mean drawn from ``phase_error_range`` degrees)
every ``refresh`` windows: data are generated on the fly.  With ``dm_share`` > 0 that share of the maps are
the maps density modification hands its mask provider a few cycles in (:func:`dm_cycle_map`), the maps the
U-net reads when it is re-run inside DM (Skubák 2024, section 2.3).

The corpus (``../shared/corpus`` relative to the repository) is read only by the scripts that call
:func:`load_corpus_sources`; nothing here is needed at inference time.
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import gemmi
import numpy as np

from crysplugins.crystal.dm import DMSettings, run_dm
from crysplugins.crystal.dm.masking import LocalDeviation, MaskProvider, MaskRequest, solvent_mask
from crysplugins.crystal.matthews import PROTEIN_VOLUME_PER_DALTON
from crysplugins.datasets.phasing import (PhasingSource, SimulatedPhasing, normalise_map, phasing_map,
                                          phasing_reflections, prepare_source, simulate_phasing)
from crysplugins.interface import CrystalMap
from crysplugins.runtime.tiling import extract_window

PACKING_SPACEGROUPS = ("P 21 21 21", "P 1 21 1", "C 1 2 1")

#: families held out for the benchmark (never used in training)
TEST_FAMILIES = ("F03", "F06", "F07", "F12", "F14")


def _rotation(rng: np.random.Generator) -> np.ndarray:
    q = rng.standard_normal(4)
    q /= np.linalg.norm(q)
    w, x, y, z = q
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def _mass(model: gemmi.Model) -> float:
    return float(sum(a.element.weight * a.occ for ch in model for r in ch for a in r))


def has_clash(structure: gemmi.Structure, min_distance: float = 4.0) -> bool:
    """True when a CA atom comes closer than ``min_distance`` Å to a CA of a symmetry mate or lattice copy."""
    ca = gemmi.Structure()
    ca.cell = structure.cell
    ca.spacegroup_hm = structure.spacegroup_hm
    model = gemmi.Model("1")
    chain = gemmi.Chain("A")
    for ch in structure[0]:
        for res in ch:
            atom = res.find_atom("CA", "*")
            if atom is not None:
                r = gemmi.Residue()
                r.name, r.seqid = res.name, res.seqid
                r.add_atom(atom)
                chain.add_residue(r)
    model.add_chain(chain)
    ca.add_model(model)
    ca.setup_cell_images()
    ns = gemmi.NeighborSearch(ca[0], ca.cell, 6.0).populate()
    cs = gemmi.ContactSearch(min_distance)
    cs.ignore = gemmi.ContactSearch.Ignore.SameAsu
    return len(cs.find_contacts(ns)) > 0


def pack_chain(structure: gemmi.Structure, rng: np.random.Generator, spacegroup: str | None = None,
               solvent: float | None = None, max_solvent: float = 0.75,
               solvent_range: tuple[float, float] = (0.40, 0.60)) -> gemmi.Structure | None:
    """Put the first model of ``structure`` into a crystal of our own (see module docstring).

    ``solvent`` (fraction of the cell volume, from the Matthews volume of 1.23 Å³/Da) is drawn uniformly from
    ``solvent_range`` when not given.  Returns None when no clash-free cell below ``max_solvent`` was found.
    """
    st = structure.clone()
    st.remove_hydrogens()
    st.remove_waters()
    st.remove_ligands_and_waters()
    st.remove_empty_chains()
    while len(st) > 1:
        del st[1]
    sg_name = spacegroup or str(rng.choice(PACKING_SPACEGROUPS))
    sg = gemmi.SpaceGroup(sg_name)
    z = len(sg.operations())
    solvent = float(rng.uniform(*solvent_range)) if solvent is None else solvent
    xyz = np.array([a.pos.tolist() for ch in st[0] for r in ch for a in r])
    rot = _rotation(rng)
    centre = xyz.mean(0)
    ext = np.ptp((xyz - centre) @ rot.T, axis=0) + 3.0
    v_prot = _mass(st[0]) * PROTEIN_VOLUME_PER_DALTON
    beta = 90.0 if sg_name == "P 21 21 21" else float(rng.uniform(93.0, 115.0))
    shape = ext * rng.uniform(0.85, 1.25, 3)
    if sg_name == "P 21 21 21":  # every axis carries a screw: two molecules stack along each
        shape *= np.array([1.0, 1.0, 1.0])
    for attempt in range(30):
        v_cell = z * v_prot / (1.0 - solvent)
        scale = (v_cell / (np.prod(shape) * math.sin(math.radians(beta)))) ** (1.0 / 3.0)
        a, b, c = shape * scale
        cell = gemmi.UnitCell(a, b, c, 90.0, beta, 90.0)
        for _ in range(24):
            shift = np.array(cell.orthogonalize(gemmi.Fractional(*rng.random(3))).tolist())
            moved = st.clone()
            tr = gemmi.Transform(gemmi.Mat33(rot.tolist()), gemmi.Vec3(*(shift - rot @ centre)))
            moved[0].transform_pos_and_adp(tr)
            moved.cell = cell
            moved.spacegroup_hm = sg.xhm()
            moved.setup_cell_images()
            if not has_clash(moved):
                moved.name = f"{structure.name}-{sg_name.replace(' ', '')}"
                moved.setup_entities()
                return moved
        solvent = 1.0 - (1.0 - solvent) / 1.05   # grow the cell by 5 % in volume
        if solvent > max_solvent:
            return None
    return None


# ------------------------------------------------------------------------------------------- corpus

@dataclass
class CorpusEntry:
    id: str
    path: Path
    family: str
    space_group: str
    resolution: float | None


def read_manifest(corpus: Path) -> list[CorpusEntry]:
    """Rows of ``corpus/MANIFEST.tsv``."""
    out = []
    with open(corpus / "MANIFEST.tsv") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            res = row["resolution_A"]
            out.append(CorpusEntry(row["id"], corpus / row["file"], row["family_cluster"], row["space_group"],
                                   float(res) if res not in ("", "NA") else None))
    return out


def load_corpus_sources(corpus: Path, rng: np.random.Generator, max_packed_per_family: int = 60,
                        d_range: tuple[float, float] = (1.8, 3.0), families: set[str] | None = None,
                        exclude_families: set[str] | None = None, packed: bool = True,
                        solvent_range: tuple[float, float] = (0.40, 0.60), log=print) -> list[PhasingSource]:
    """PhasingSources for corpus entries with real cells plus packed chains (see module docstring).

    Packed chains get a solvent fraction drawn from ``solvent_range`` (:func:`pack_chain`).

    Real entries use their stated resolution kept within [1.5, 3.5] Å (a drawn one in ``d_range`` when
    unstated); packed chains draw d_min in ``d_range``.
    """
    entries = read_manifest(Path(corpus))
    sel = [e for e in entries if (families is None or e.family in families)
           and not (exclude_families and e.family in exclude_families)]
    out: list[PhasingSource] = []
    per_family: dict[str, int] = {}
    for e in sel:
        st = gemmi.read_structure(str(e.path))
        st.setup_entities()
        if e.space_group != "NA":
            d = float(np.clip(e.resolution, 1.5, 3.5)) if e.resolution else float(rng.uniform(*d_range))
            try:
                src = prepare_source(st, d, name=e.id, family=e.family)
            except Exception as exc:  # noqa: BLE001 - a broken entry is skipped, and said so
                log(f"skip {e.id}: {exc}")
                continue
            src.meta["kind"] = "real"
            out.append(src)
        elif packed and per_family.get(e.family, 0) < max_packed_per_family:
            crystal = pack_chain(st, rng, solvent_range=solvent_range)
            if crystal is None:
                log(f"skip {e.id}: no clash-free packing")
                continue
            src = prepare_source(crystal, float(rng.uniform(*d_range)), name=f"{e.id}-packed", family=e.family)
            src.meta["kind"] = "packed"
            src.meta["spacegroup"] = crystal.spacegroup_hm
            out.append(src)
            per_family[e.family] = per_family.get(e.family, 0) + 1
    return out


def save_sources(sources: list[PhasingSource], path: Path) -> None:
    """Store sources in one .npz (cells, space groups, hkl, F_model, masks)."""
    arrays: dict[str, np.ndarray] = {}
    for i, s in enumerate(sources):
        c = s.cell
        arrays[f"{i}_cell"] = np.array([c.a, c.b, c.c, c.alpha, c.beta, c.gamma])
        arrays[f"{i}_info"] = np.array([s.name, s.family, s.spacegroup.xhm(), str(s.d_min), s.meta.get("kind", "")])
        arrays[f"{i}_hkl"] = s.hkl
        arrays[f"{i}_f"] = s.f_model.astype(np.complex64)
        arrays[f"{i}_mask"] = np.packbits(s.mask.astype(bool))
        arrays[f"{i}_shape"] = np.array(s.shape)
    arrays["n"] = np.array(len(sources))
    np.savez_compressed(path, **arrays)


def load_sources(path: Path) -> list[PhasingSource]:
    """Inverse of :func:`save_sources`."""
    z = np.load(path)
    out = []
    for i in range(int(z["n"])):
        name, family, sg, d, kind = (str(x) for x in z[f"{i}_info"])
        cell = gemmi.UnitCell(*z[f"{i}_cell"].tolist())
        sgo = gemmi.SpaceGroup(sg)
        hkl = z[f"{i}_hkl"].astype(np.int32)
        shape = tuple(int(x) for x in z[f"{i}_shape"])
        mask = np.unpackbits(z[f"{i}_mask"])[: int(np.prod(shape))].reshape(shape).astype(np.uint8)
        inv_d2 = np.asarray(cell.calculate_1_d2_array(hkl), dtype=np.float64)
        centric = np.asarray(sgo.operations().centric_flag_array(hkl), dtype=bool)
        src = PhasingSource(name=name, cell=cell, spacegroup=sgo, d_min=float(d), hkl=hkl,
                            f_model=z[f"{i}_f"].astype(np.complex128), centric=centric, inv_d2=inv_d2,
                            mask=mask, family=family)
        src.meta["kind"] = kind
        out.append(src)
    return out


# ------------------------------------------------------------------------------------------ windows

def augment(x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Flip about a random set of axes and rotate by 90° in a random plane (section 2.2), same for both."""
    for ax in range(3):
        if rng.random() < 0.5:
            x, y = np.flip(x, ax), np.flip(y, ax)
    plane = [(0, 1), (0, 2), (1, 2)][int(rng.integers(3))]
    k = int(rng.integers(4))
    return np.ascontiguousarray(np.rot90(x, k, plane)), np.ascontiguousarray(np.rot90(y, k, plane))


class WindowSampler:
    """Random augmented windows (normalised phasing map, true mask) from a list of sources.

    With ``lv_wrong_weight`` > 0 each window also gets per-voxel loss weights: 1, and 1 + ``lv_wrong_weight``
    where the local-rms mask of the same map (:func:`local_rms_mask`) is wrong.  The density-modification
    engine mixes the U-net's score with that statistic, so the U-net is worth most where the statistic errs."""

    def __init__(self, sources: list[PhasingSource], rng: np.random.Generator, window: int = 48,
                 phase_error_range: tuple[float, float] = (35.0, 80.0), refresh: int = 8,
                 lv_wrong_weight: float = 0.0, dm_share: float = 0.0, dm_cycles: tuple[int, ...] = (5, 10, 15, 20, 25),
                 dm_provider: MaskProvider | None = None, dm_refresh: int = 32) -> None:
        if not sources:
            raise ValueError("WindowSampler needs at least one source.")
        if dm_share > 0 and dm_provider is None:
            raise ValueError("WindowSampler needs a dm_provider to draw density-modification maps.")
        self.sources, self.rng, self.window = sources, rng, window
        self.phase_error_range, self.refresh = phase_error_range, refresh
        self.lv_wrong_weight = lv_wrong_weight
        self.dm_share, self.dm_cycles, self.dm_provider = dm_share, tuple(dm_cycles), dm_provider
        self.dm_refresh = dm_refresh  # a DM map costs seconds to make, so it serves more windows
        self._maps: dict[int, tuple[np.ndarray, np.ndarray | None, int]] = {}

    def _map(self, i: int) -> tuple[np.ndarray, np.ndarray | None]:
        """(normalised phasing map, per-voxel loss weights or None) of source ``i``, redrawn after ``refresh``
        windows (``dm_refresh`` for a density-modification map)."""
        cached = self._maps.get(i)
        if cached is None or cached[2] <= 0:
            src = self.sources[i]
            sim = simulate_phasing(src, float(self.rng.uniform(*self.phase_error_range)), self.rng)
            uses = self.refresh
            if self.dm_share > 0 and self.rng.random() < self.dm_share:
                cmap = dm_cycle_map(src, sim, int(self.rng.choice(self.dm_cycles)), self.dm_provider)
                uses = self.dm_refresh
            else:
                cmap = phasing_map(src, sim)
            weights = None
            if self.lv_wrong_weight > 0:
                wrong = local_rms_mask(cmap, src.d_min, src.solvent_fraction) != (src.mask > 0)
                weights = (1.0 + self.lv_wrong_weight * wrong).astype(np.float32)
            cached = (normalise_map(cmap.array), weights, uses)
        self._maps[i] = (cached[0], cached[1], cached[2] - 1)
        return cached[0], cached[1]

    def sample(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """``n`` windows: x (n, 1, w, w, w) float32 and y (n, w, w, w) int64 (1 = solvent)."""
        xs, ys, _ = self.sample_weighted(n)
        return xs, ys

    def sample_weighted(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`sample` and the per-voxel loss weights (n, w, w, w) float32 (all 1 without ``lv_wrong_weight``)."""
        w = self.window
        xs = np.empty((n, 1, w, w, w), np.float32)
        ys = np.empty((n, w, w, w), np.int64)
        ws = np.ones((n, w, w, w), np.float32)
        for j in range(n):
            i = int(self.rng.integers(len(self.sources)))
            arr, weights = self._map(i)
            origin = tuple(int(self.rng.integers(s)) for s in arr.shape)
            x = extract_window(arr, origin, w)
            y = extract_window(self.sources[i].mask, origin, w)
            if weights is None:
                xs[j, 0], ys[j] = augment(x, y, self.rng)
                continue
            # the weights ride along as a second label channel, so the augmentation moves them with y
            x, yw = augment(x, np.stack([y.astype(np.float32), extract_window(weights, origin, w)], axis=-1), self.rng)
            xs[j, 0], ys[j], ws[j] = x, yw[..., 0], yw[..., 1]
        return xs, ys, ws


def local_rms_mask(cmap: CrystalMap, d_min: float, solvent_fraction: float) -> np.ndarray:
    """The density-modification engine's own first guess at the solvent (True) of a phasing map: the local
    rms about the map mean in a cone-weighted sphere of radius d_min + 2 Å (the middle of the engine's
    shrinking schedule, :mod:`crysplugins.crystal.dm.masking`), lowest ``solvent_fraction`` of the cell."""
    arr = np.asarray(cmap.array, dtype=np.float64)
    rms = LocalDeviation(cmap.cell, arr.shape)(arr - arr.mean(), d_min + 2.0, "rms", 0.0)
    return solvent_mask(-rms, solvent_fraction)


class _Reached(Exception):
    """Raised by :func:`dm_cycle_map`'s provider once it holds the map it wants."""


def dm_cycle_map(src: PhasingSource, sim: SimulatedPhasing, cycle: int, provider: MaskProvider,
                 settings: DMSettings | None = None) -> CrystalMap:
    """The map density modification (one run of the engine, ``settings`` or its defaults) hands its mask
    provider at ``cycle`` (0-based; a multiple of ``mask.provider_every``), started from the simulated
    phasing ``sim`` of ``src``, on the source's grid.  ``provider`` (e.g. the shipped U-net) makes the masks
    of the cycles before, so the map is the one that U-net mode would show a U-net at that cycle; the run
    stops there."""
    settings = settings or DMSettings(ensemble=(), ensemble_below=0)
    refl, hl, _ = phasing_reflections(src, sim)
    held: dict[str, CrystalMap] = {}

    def recording(req: MaskRequest) -> CrystalMap | np.ndarray:
        if req.cycle >= cycle:
            held["map"] = req.map_on(src.shape)
            raise _Reached
        return provider(req)

    try:
        run_dm(refl, hl, settings, solvent_fraction=src.solvent_fraction, mask_provider=recording)
    except _Reached:
        return held["map"]
    raise ValueError(f"Density modification never asked for a mask at cycle {cycle}.")
