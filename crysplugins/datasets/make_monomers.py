"""Write ``crysplugins/data/monomers.json``: ideal heavy-atom coordinates of the 20 standard amino acids.

Run once (the JSON is committed; nothing at run time needs Coot)::

    python -m crysplugins.datasets.make_monomers [--out crysplugins/data/monomers.json]

Source: Coot's bundled monomer library (the "Get Monomer" ideal coordinates that paper 000, appendix B,
section "Partial structures" refers to), read through coot-headless-api
``molecules_container_t.get_monomer(code)`` and written out with ``write_coordinates``.  Coot writes
``./coot-backup/`` in the working directory, so everything runs inside a temporary folder.
Hydrogens and the terminal OXT are dropped: the JSON holds, per residue type, the heavy atoms of the
residue inside a chain (atom name, element symbol, x, y, z in Å).
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import gemmi

RESIDUES = {"A": "ALA", "C": "CYS", "D": "ASP", "E": "GLU", "F": "PHE", "G": "GLY", "H": "HIS", "I": "ILE",
            "K": "LYS", "L": "LEU", "M": "MET", "N": "ASN", "P": "PRO", "Q": "GLN", "R": "ARG", "S": "SER",
            "T": "THR", "V": "VAL", "W": "TRP", "Y": "TYR"}


def extract(workdir: str) -> dict:
    """Ask Coot for each monomer, write it as PDB in ``workdir`` and read the heavy atoms with gemmi."""
    import coot_headless_api as chapi  # optional dependency, only for regenerating the JSON

    mc = chapi.molecules_container_t(False)
    out: dict = {}
    for one, three in RESIDUES.items():
        imol = mc.get_monomer(three)
        if imol < 0:
            raise RuntimeError(f"Coot has no monomer {three}")
        path = os.path.join(workdir, f"{three}.pdb")
        mc.write_coordinates(imol, path)
        st = gemmi.read_structure(path)
        st.remove_hydrogens()
        atoms = []
        for res in st[0][0]:
            for at in res:
                if at.name == "OXT":
                    continue
                atoms.append([at.name, at.element.name, round(at.pos.x, 3), round(at.pos.y, 3),
                              round(at.pos.z, 3)])
        out[one] = {"name": three, "atoms": atoms}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "data" / "monomers.json"))
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        cwd = os.getcwd()
        os.chdir(tmp)
        try:
            data = extract(tmp)
        finally:
            os.chdir(cwd)
    doc = {"source": "coot-headless-api molecules_container_t.get_monomer (ideal coordinates), heavy atoms, "
                     "no OXT; units Å", "residues": data}
    Path(args.out).write_text(json.dumps(doc, separators=(",", ":")) + "\n")
    print(f"wrote {args.out}: {sum(len(v['atoms']) for v in data.values())} atoms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
