"""Make the small fragment crystals used by the charge-flipping / refinement / metrics tests.

Run once from the repository root (reads ../shared/corpus, i.e. /work/shared/corpus):

    .venv/bin/python tests/data/make_classical_fixtures.py

It writes ``tests/data/frag2.pdb`` and ``tests/data/frag5.pdb``: 2- and 5-residue segments of a corpus
chain, B = 20, no hydrogens, placed in a P1 cell following the paper's appendix B (min intermolecular
contact > 3.45 Å, random angles from {90, 100, 110, 120}°, centre of mass at the cell centre).  The
functions :func:`fragment_crystal` and :func:`segment` are also used by ``benchmarks/bench_charge_flipping.py``
when ``crysplugins.crystal.cells`` (dataset issue) is not installed.
"""
from __future__ import annotations

import sys
from pathlib import Path

import gemmi
import numpy as np

HERE = Path(__file__).resolve().parent
CORPUS = HERE.parents[2] / "shared" / "corpus"
STANDARD = set("ALA ARG ASN ASP CYS GLN GLU GLY HIS ILE LEU LYS MET PHE PRO SER THR TRP TYR VAL".split())


def segment(st: gemmi.Structure, chain_index: int, start: int, n: int) -> gemmi.Structure | None:
    """Residues start..start+n-1 of a polymer chain as a new structure (None if non-standard/incomplete)."""
    chain = st[0][chain_index]
    poly = chain.get_polymer()
    if start + n > len(poly):
        return None
    out = gemmi.Structure()
    model = gemmi.Model("1")
    ch = gemmi.Chain("A")
    for i in range(start, start + n):
        res = poly[i]
        if res.name not in STANDARD or res.is_water():
            return None
        if i > start and poly[i - 1].seqid.num + 1 != res.seqid.num:
            return None  # gap
        r = gemmi.Residue()
        r.name, r.seqid, r.entity_type = res.name, res.seqid, gemmi.EntityType.Polymer
        seen = set()
        for a in res:
            if a.element.name == "H" or a.name in seen:
                continue
            seen.add(a.name)
            b = gemmi.Atom()
            b.name, b.element, b.pos, b.occ, b.b_iso = a.name, a.element, a.pos, 1.0, 20.0
            r.add_atom(b)
        if "CA" not in seen or "N" not in seen or "C" not in seen:
            return None
        ch.add_residue(r)
    model.add_chain(ch)
    out.add_model(model)
    out.setup_entities()
    return out


def _min_contact(st: gemmi.Structure) -> float:
    """Shortest distance (Å) between an atom and any atom of a lattice copy (not itself)."""
    cell = st.cell
    pos = np.array([a.pos.tolist() for r in st[0][0] for a in r])
    frac = np.array([cell.fractionalize(gemmi.Position(*p)).tolist() for p in pos])
    best = np.inf
    for du in (-1, 0, 1):
        for dv in (-1, 0, 1):
            for dw in (-1, 0, 1):
                if du == dv == dw == 0:
                    continue
                shifted = frac + np.array([du, dv, dw])
                cart = np.array([cell.orthogonalize(gemmi.Fractional(*f)).tolist() for f in shifted])
                d = np.sqrt(((pos[:, None, :] - cart[None, :, :]) ** 2).sum(-1)).min()
                best = min(best, d)
    return float(best)


def fragment_crystal(frag: gemmi.Structure, rng: np.random.Generator, contact: float = 3.45) -> gemmi.Structure:
    """Place a fragment in a P1 cell as in appendix B (random angles, growing axes, COM at the centre)."""
    angles = rng.choice([90.0, 100.0, 110.0, 120.0], size=3, p=[1 / 3, 1 / 3, 2 / 9, 1 / 9])
    pos = np.array([a.pos.tolist() for r in frag[0][0] for a in r])
    lengths = pos.max(0) - pos.min(0) + contact
    st = frag.clone()
    st.spacegroup_hm = "P 1"
    for _ in range(200):
        try:
            cell = gemmi.UnitCell(*lengths, *angles)
        except Exception:
            cell = None
        if cell is None or not np.isfinite(cell.volume) or cell.volume <= 0:
            angles = np.array([90.0, 90.0, 90.0])
            continue
        st.cell = cell
        com = st[0].calculate_center_of_mass()
        centre = cell.orthogonalize(gemmi.Fractional(0.5, 0.5, 0.5))
        st[0].transform_pos_and_adp(gemmi.Transform(gemmi.Mat33(), centre - com))
        if _min_contact(st) > contact:
            st.setup_cell_images()
            return st
        lengths = lengths + 0.5
    raise RuntimeError("could not place the fragment without clashes")


def main() -> int:
    if not CORPUS.exists():
        print(f"corpus not found at {CORPUS}", file=sys.stderr)
        return 1
    rng = np.random.default_rng(7)
    st = gemmi.read_structure(str(CORPUS / "structures" / "1RX2.cif.gz"))
    st.remove_hydrogens()
    for n, start, name in ((2, 10, "frag2.pdb"), (5, 30, "frag5.pdb")):
        frag = segment(st, 0, start, n)
        assert frag is not None
        crystal = fragment_crystal(frag, rng)
        crystal.write_minimal_pdb(str(HERE / name))
        print(name, crystal.cell, gemmi.one_letter_code([r.name for r in crystal[0][0]]))
    return 0



def structure_factors(pdb: str | Path, d_min: float) -> tuple[gemmi.Structure, np.ndarray, np.ndarray]:
    """(structure, hkl (n,3), complex F in electrons) of a fixture to ``d_min`` Å, computed by gemmi
    (``DensityCalculatorX`` + ``transform_map_to_f_phi``; one of each Friedel pair, no 000)."""
    st = gemmi.read_structure(str(pdb))
    st.setup_entities()
    dc = gemmi.DensityCalculatorX()
    dc.d_min = d_min
    dc.rate = 1.5
    dc.grid.setup_from(st)
    dc.put_model_density_on_grid(st[0])
    asu = gemmi.transform_map_to_f_phi(dc.grid, half_l=True).prepare_asu_data(dmin=d_min)
    return st, np.array(asu.miller_array, dtype=np.int64), np.array(asu.value_array, dtype=np.complex128)


def amplitudes_and_phases(pdb: str | Path, d_min: float) -> tuple[gemmi.Structure, np.ndarray, np.ndarray,
                                                                  np.ndarray, str]:
    """(structure, hkl, |F| in electrons, phases in degrees, one-letter sequence) of a fixture to ``d_min`` Å."""
    st, hkl, f = structure_factors(pdb, d_min)
    return st, hkl, np.abs(f), np.angle(f, deg=True), gemmi.one_letter_code([r.name for r in st[0][0]])


if __name__ == "__main__":
    sys.exit(main())
