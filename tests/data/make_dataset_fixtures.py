"""Regenerate the dataset-builder fixtures in tests/data/dataset/ (run once; outputs are committed).

Reads ../shared/corpus (relative to the repository: /work/shared/corpus) and cuts 14-residue pieces of
real chains, each a few KB, with deliberate defects so that the fragment filters can be tested:

* 1EJG (F01): unchanged;
* 1AJJ (F04): residue 7 deleted (chain break: C-N distance > 2 Å);
* 1LFM (F03): atom CB of residue 9 deleted (missing heavy atom);
* 2PCB (F03): an alternative conformation B (shifted 1 Å) and hydrogens added to residue 5;
* 1RX2 (F07): MET 1 turned into selenomethionine MSE (SE instead of SD; must come back as MET);
* corrupt.cif.gz: not a structure file (truncated gzip) - must be skipped and counted.

MANIFEST.tsv gives id and family_cluster (1LFM and 2PCB share F03, so a split must keep them together).
"""
from __future__ import annotations

import gzip
from pathlib import Path

import gemmi

HERE = Path(__file__).resolve().parent / "dataset"
CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus"
PICK = {"1EJG": ("F01", 1), "1AJJ": ("F04", 1), "1LFM": ("F03", 20), "2PCB": ("F03", 20), "1RX2": ("F07", 0)}


def cut(pid: str, start: int, n: int = 14) -> gemmi.Structure:
    st = gemmi.read_structure(str(CORPUS / "structures" / f"{pid}.cif.gz"))
    st.remove_hydrogens()
    st.remove_alternative_conformations()
    st.remove_ligands_and_waters()
    model = st[0]
    chain = model[0]
    keep = list(chain.get_polymer())[start:start + n]
    new = gemmi.Structure()
    new.name = pid
    new.cell = gemmi.UnitCell()
    m = gemmi.Model("1")
    c = gemmi.Chain("A")
    for r in keep:
        c.add_residue(r)
    m.add_chain(c)
    new.add_model(m)
    new.setup_entities()
    return new


def main() -> None:
    HERE.mkdir(exist_ok=True)
    for pid, (fam, start) in PICK.items():
        st = cut(pid, start)
        ch = st[0][0]
        for r in ch:
            for at in r:
                at.aniso = gemmi.SMat33f(0, 0, 0, 0, 0, 0)
        if pid == "1RX2":
            r = ch[0]
            assert r.name == "MET", r.name
            r.name = "MSE"
            r.het_flag = "H"
            for at in r:
                if at.name == "SD":
                    at.name, at.element = "SE", gemmi.Element("Se")
        elif pid == "1AJJ":
            del ch[7]
        elif pid == "1LFM":
            r = ch[9]
            for i, at in enumerate(r):
                if at.name == "CB":
                    del r[i]
                    break
        elif pid == "2PCB":
            r = ch[5]
            n = len(r)
            for i in range(n):
                at = r[i]
                at.altloc = "A"
                at.occ = 0.6
                b = at.clone()
                b.altloc = "B"
                b.occ = 0.4
                b.pos = gemmi.Position(at.pos.x + 1.0, at.pos.y, at.pos.z)
                r.add_atom(b)
            h = r[0].clone()
            h.name, h.element, h.altloc = "H", gemmi.Element("H"), "\0"
            r.add_atom(h)
        text = st.make_pdb_string()
        (HERE / f"{pid}.pdb.gz").write_bytes(gzip.compress(text.encode(), mtime=0))
    (HERE / "corrupt.cif.gz").write_bytes(gzip.compress(b"data_broken\n_atom_site.id\n")[:-9])
    rows = ["id\tfamily_cluster"] + [f"{pid}\t{fam}" for pid, (fam, _) in PICK.items()]
    (HERE / "MANIFEST.tsv").write_text("\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
