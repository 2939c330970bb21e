"""Example inputs shipped in the package (``crysplugins/data/examples``), for ``crysplugins demo`` and tutorials.

* :func:`fragment_example` — a held-out test dipeptide of the shipped RecCrysFormer dataset: amplitudes-only
  MTZ (P1, 1.5 Å) and its sequence.
* :func:`phasing_map_example` — PDB 1RX4 (DHFR, P 21 21 21, 2.2 Å): observed FP/SIGFP and the deposited
  2mFo-DFc map coefficients FWT/PHWT with FOM (from matchmaps' test data; PDB data are CC0).
"""
from __future__ import annotations

import json
from importlib import resources
from typing import Any

from crysplugins.crystal import io
from crysplugins.interface import Sequence

EXAMPLES = resources.files("crysplugins") / "data" / "examples"


def fragment_example() -> dict[str, Any]:
    """{'reflections': amplitudes (F, SIGF), 'sequence': Sequence, 'info': the example's JSON record}."""
    root = EXAMPLES / "patterson_density"
    info = json.loads((root / "example.json").read_text())
    refl = io.read_mtz(str(root / info["amplitudes"]), need=("F",), want=("SIGF",))
    return {"reflections": refl, "sequence": Sequence(info["sequence"], name=info["id"]), "info": info}


def phasing_map_example() -> Any:
    """1RX4 reflections with F=FWT, PHI=PHWT, FOM chosen (a whole-cell map once Fourier-transformed)."""
    return io.read_mtz(str(EXAMPLES / "1rx4_map.mtz"), columns={"F": "FWT", "PHI": "PHWT", "FOM": "FOM"})


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
    from crysplugins.crystal.matthews import matthews_table

    refl = phasing_map_example()
    weight = crystal_example("1rx2")["sequence"].weight()
    return matthews_table(refl.cell, refl.spacegroup, weight, refl.d_min).best.solvent_fraction
