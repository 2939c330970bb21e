"""The fragment phasers on a real peptide crystal: 5E5Z (LVHSSN, P2₁, 1.66 Å, measured amplitudes; reads ../shared).

The fragment predictors were built and calibrated on fragments in mostly empty P1 cells (45–98 % solvent).  A
peptide's own crystal is packed.  On the measured 5E5Z amplitudes expanded to P1 (two copies in the cell, 8 % solvent
by 1.23 Å³/Da) this runs the ``charge-flipping`` predictor, the ``patterson-density`` and ``fragment-phasing``
predictors (which refuse such a cell) and fragment-phasing's candidate search itself (past the refusal, to show what
it would return), and compares every result with the deposited model's phases (origin/hand-invariant,
|F_obs|-weighted; the model's waters included).

    OMP_NUM_THREADS=1 python benchmarks/bench_real_peptide.py      (→ benchmarks/out/real_peptide_5e5z.json, ~5 s)
"""
from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import gemmi
import numpy as np

from crysplugins.crystal import charge_flipping as cf
from crysplugins.crystal import solution_score as ss
from crysplugins.crystal.fourier import stol2
from crysplugins.crystal.origin import search_origin_hand
from crysplugins.crystal.refine import solvent_fraction_from_sequence
from crysplugins.errors import CrysError
from crysplugins.host import Host
from crysplugins.request import load_request_inputs, run_prediction
from crysplugins.runtime import fragment_phasing as fp

REPO = Path(__file__).resolve().parents[1]
DIFFRACTION = REPO.parent / "shared" / "corpus" / "diffraction"
OUT = REPO / "benchmarks" / "out" / "real_peptide_5e5z.json"
SEQUENCE = "LVHSSN" * 2  # the two molecules of the P2₁ cell, as one P1 cell holds them


def p1_data(folder: Path) -> tuple[Path, gemmi.UnitCell, np.ndarray, np.ndarray]:
    """The measured amplitudes expanded to P1 (written to an MTZ in ``folder``), with hkl and F."""
    mtz = gemmi.read_mtz_file(str(DIFFRACTION / "5e5z.mtz"))
    mtz.expand_to_p1()
    mtz.ensure_asu()
    path = folder / "5e5z_p1.mtz"
    mtz.write_to_file(str(path))
    hkl = np.array(mtz.make_miller_array())
    f = np.array(mtz.column_with_label("FP"), dtype=np.float64)
    ok = np.isfinite(f) & (f > 0)
    return path, mtz.cell, hkl[ok], f[ok]


def model_f(hkl: np.ndarray) -> np.ndarray:
    """Structure factors of the deposited model (both P2₁ copies, waters included) at ``hkl``."""
    st = gemmi.read_structure(str(DIFFRACTION / "5e5z.pdb"))
    model = gemmi.Model("1")
    for k, op in enumerate(st.find_spacegroup().operations()):
        for chain in st[0]:
            copy = gemmi.Chain(f"{chain.name}{k}")
            for res in chain:
                moved = res.clone()
                for atom in moved:
                    frac = st.cell.fractionalize(atom.pos)
                    atom.pos = st.cell.orthogonalize(gemmi.Fractional(*op.apply_to_xyz([frac.x, frac.y, frac.z])))
                copy.add_residue(moved)
            model.add_chain(copy)
    calc = gemmi.StructureFactorCalculatorX(st.cell)
    return np.array([calc.calculate_sf_from_model(model, [int(v) for v in h]) for h in hkl])


def error(hkl: np.ndarray, f: np.ndarray, f_model: np.ndarray, hkl_out: np.ndarray, phi_out: np.ndarray) -> float:
    """Invariant phase error (degrees) of phases given at ``hkl_out`` against the model's, on the common reflections."""
    index = {tuple(h): i for i, h in enumerate(hkl_out)}
    pick = [(i, index[tuple(h)]) for i, h in enumerate(hkl) if tuple(h) in index]
    a, b = np.array(pick).T
    return search_origin_hand(hkl[a], f[a], np.degrees(np.angle(f_model[a])), phi_out[b]).phase_error


def predictor_run(name: str, inputs: dict) -> dict:
    """One predictor through the host: its phases, time and scalars, or its refusal."""
    pred = Host(autoload=False).get(name)
    t0 = time.monotonic()
    try:
        out = run_prediction(pred, load_request_inputs(pred, inputs))
    except CrysError as exc:
        return {"refused": str(exc)}
    refl = out.reflections["phases"]
    return {"seconds": round(time.monotonic() - t0, 2), "hkl": refl.miller_array(), "phi": refl.values("PHI"),
            "score": {k: round(float(v.value), 4) for k, v in out.scalars.items()}}


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        mtz, cell, hkl, f = p1_data(Path(tmp))
        f_model = model_f(hkl)
        d_min = float(1 / np.sqrt(4 * stol2(cell, hkl).max()))
        result = {"data": {"reflections_p1": len(hkl), "d_min": round(d_min, 3),
                           "solvent_from_sequence": round(solvent_fraction_from_sequence(SEQUENCE, cell), 3),
                           "cc_fobs_fmodel": round(float(np.corrcoef(f, np.abs(f_model))[0, 1]), 3)}}
        for name in ("charge-flipping", "patterson-density", "fragment-phasing"):
            key = "reflections" if name == "patterson-density" else "mtz"
            run = predictor_run(name, {key: str(mtz), "sequence": SEQUENCE})
            if "phi" in run:
                run["error"] = round(error(hkl, f, f_model, run.pop("hkl"), run.pop("phi")), 1)
            result[name] = run
            print(name, json.dumps(run), flush=True)
        # past the refusal: fragment-phasing's own search (no network), every candidate against the model
        setup = fp.Setup(cell, hkl, f, cf.normalise_amplitudes(cell, hkl, f), ss.expected_atoms(SEQUENCE),
                         d_min, SEQUENCE, None)
        search = fp.solve(setup)
        result["fragment-phasing search past the refusal"] = [
            {"candidate": c.name, "dm_cc": round(c.refined.score, 4), "probability": round(c.probability, 3),
             "error": round(error(hkl, f, f_model, c.refined.hkl, c.refined.phases), 1), "winner": i == search.best}
            for i, c in enumerate(search.candidates)]
    OUT.write_text(json.dumps(result, indent=1))
    print(json.dumps(result["data"]), "\n", json.dumps(result["fragment-phasing search past the refusal"], indent=0))


if __name__ == "__main__":
    main()
