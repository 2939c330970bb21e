"""Example inputs shipped in the package (``crysplugins/data/examples``), for ``crysplugins demo`` and tutorials.

* :func:`fragment_example` — a held-out test dipeptide of the shipped RecCrysFormer dataset: amplitudes-only
  MTZ (P1, 1.5 Å) and its sequence.
* :func:`phasing_map_example` — PDB 1RX4 (DHFR, P 21 21 21, 2.2 Å): observed FP/SIGFP and the deposited
  2mFo-DFc map coefficients FWT/PHWT with FOM (from matchmaps' test data; PDB data are CC0).
* :func:`copy_examples` — the same files copied to a folder of the user's (``crysplugins examples --out
  DIR``), so the README's command lines run as written.
"""
from __future__ import annotations

import json
import shutil
from importlib import resources
from pathlib import Path
from typing import Any

from crysplugins.crystal import io
from crysplugins.crystal.matthews import matthews_table
from crysplugins.errors import CrysError
from crysplugins.interface import Sequence
from crysplugins.validate import writable_folder

EXAMPLES = resources.files("crysplugins") / "data" / "examples"


def fragment_example() -> dict[str, Any]:
    """{'reflections': amplitudes (F, SIGF), 'sequence': Sequence, 'info': the example's JSON record}."""
    root = EXAMPLES / "patterson_density"
    info = json.loads((root / "example.json").read_text())
    refl = io.read_mtz(str(root / info["amplitudes"]), need=("F",), want=("SIGF",))
    return {"reflections": refl, "sequence": Sequence(info["sequence"], name=info["id"]), "info": info}


def phasing_map_example() -> Any:
    """1RX4 reflections with F=FWT, PHI=PHWT chosen (a whole-cell map once Fourier-transformed; map
    coefficients are already weighted, so no FOM)."""
    return io.read_mtz(str(EXAMPLES / "1rx4_map.mtz"), columns={"F": "FWT", "PHI": "PHWT"})


def crystal_example(name: str) -> dict[str, Any]:
    """Cell, space group, sequence and resolution of a shipped crystal example (e.g. ``"1rx2"``)."""
    meta = json.loads((EXAMPLES / f"{name}.json").read_text())
    fasta = (EXAMPLES / meta["sequence_file"]).read_text()
    residues = "".join(line.strip() for line in fasta.splitlines() if line.strip() and not line.startswith(">"))
    return {
        "cell": io.parse_cell(" ".join(str(x) for x in meta["cell"])),
        "spacegroup": io.parse_spacegroup(meta["spacegroup"]),
        "sequence": Sequence(residues, name=meta["id"]),
        "resolution": float(meta["d_min"]),
    }


def phasing_map_solvent_fraction() -> float:
    """Most probable Matthews solvent fraction of the 1RX4 example (one DHFR chain; the 1RX2 sequence)."""
    refl = phasing_map_example()
    weight = crystal_example("1rx2")["sequence"].weight()
    return matthews_table(refl.cell, refl.spacegroup, weight, refl.d_min).best.solvent_fraction


#: file in the user's folder -> (file in the package's examples, what it is)
EXAMPLE_FILES: dict[str, tuple[str, str]] = {
    "fragment/2XHE_1_460_amplitudes.mtz": ("patterson_density/2XHE_1_460_amplitudes.mtz",
                                           "held-out test dipeptide TM (P1, 1.5 Å): amplitudes F, SIGF"),
    "fragment/2XHE_1_460_phases.mtz": ("patterson_density/2XHE_1_460_phases.mtz",
                                       "its true phases F, PHI (for crysplugins evaluate --mtz-dir)"),
    "fragment/2XHE_1_460.seq": ("patterson_density/2XHE_1_460.seq", "its sequence (FASTA): TM"),
    "1rx2.fasta": ("1rx2.fasta", "E. coli DHFR sequence (PDB 1RX2, one chain)"),
    "1rx2.json": ("1rx2.json", "PDB 1RX2 cell, space group and resolution"),
    "1rx4_map.mtz": ("1rx4_map.mtz", "PDB 1RX4 (DHFR, P 21 21 21, 2.2 Å): FP, SIGFP, FWT, PHWT, FOM"),
}


def copy_examples(out: str | Path, overwrite: bool = False) -> dict[str, str]:
    """Copy the example files into ``out`` (``fragment/`` holds the dipeptide); return {file: what it is}.

    A file of the same name already there is replaced only with ``overwrite``; nothing else is touched."""
    root = Path(out)
    clashes = [name for name in EXAMPLE_FILES if (root / name).exists()]
    if clashes and not overwrite:
        raise CrysError(f"{root / clashes[0]} already exists; name another folder, or add --overwrite to "
                        f"replace the example files.")
    writable_folder(root / "fragment")
    for name, (source, _) in EXAMPLE_FILES.items():
        with io.atomic_path(root / name) as tmp, (EXAMPLES / source).open("rb") as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst)
    return {name: what for name, (_, what) in EXAMPLE_FILES.items()}
