"""Built-in plugin: solvent content from the Matthews coefficient (predictor ``solvent-content``).

Inputs: unit cell and space group (or an MTZ file that carries them), the sequence of one copy (or its
molecular weight in Da) and the high-resolution limit in Å (or the MTZ's).  Output: the table of
possible copy numbers in the asymmetric unit with Vm (Å³/Da), solvent fraction and the Kantardjieff &
Rupp (2003) probability normalised over the candidates, plus the most probable copy number and its
solvent fraction.  The formulas and the parameter table live in :mod:`crysplugins.crystal.matthews`.

Registered through the ``register_predictors`` hook exactly like a third-party plugin.
"""
from __future__ import annotations

from typing import Any

from crysplugins.crystal import matthews
from crysplugins.errors import CrysError
from crysplugins.examples import crystal_example
from crysplugins.hookspecs import hookimpl
from crysplugins.interface import (InputSpec, Kind, OutputSpec, Prediction, Request, Scalar, Sequence,
                                   Table)
from crysplugins.runtime.solvent_unet import unet_solvent_content

EXAMPLE = "1rx2"


class SolventContentPredictor:
    """Matthews coefficient and Kantardjieff & Rupp probabilities for each possible copy number."""

    name = "solvent-content"
    version = "1.0.0"
    summary = "Copies in the asymmetric unit and solvent fraction from the Matthews coefficient (Kantardjieff & Rupp 2003)."
    inputs = (
        InputSpec("cell", Kind.CELL, "unit cell a b c alpha beta gamma (default: from --reflections)",
                  unit="Å, °"),
        InputSpec("spacegroup", Kind.SPACEGROUP, "space group symbol or number (default: from --reflections)"),
        InputSpec("sequence", Kind.SEQUENCE, "sequence of one copy (one-letter string or FASTA file)",
                  group="composition"),
        InputSpec("molecular_weight", Kind.FLOAT, "molecular weight of one copy", unit="Da",
                  group="composition", minimum=1.0),
        InputSpec("resolution", Kind.FLOAT, "high-resolution limit (default: from --reflections)", unit="Å",
                  minimum=0.1, maximum=100.0),
        InputSpec("reflections", Kind.REFLECTIONS,
                  "MTZ file; only its cell, space group and resolution are used"),
        InputSpec("phasing_map", Kind.MAP, "experimental phasing map (optional; a CCP4/MRC map or an MTZ of "
                  "map coefficients): adds the solvent-mask U-net estimate and its combination with Matthews "
                  "(Skubák 2024, eq. 1-2)"),
    )
    outputs = (
        OutputSpec("copies", Kind.TABLE, "copies in the asymmetric unit: Vm (Å³/Da), solvent fraction, probability"),
        OutputSpec("most_probable_copies", Kind.SCALAR, "copy number with the highest probability"),
        OutputSpec("solvent_fraction", Kind.SCALAR, "solvent fraction for the most probable copy number"),
        OutputSpec("matthews_coefficient", Kind.SCALAR, "Vm for the most probable copy number", unit="Å³/Da"),
        OutputSpec("solvent_fraction_unet", Kind.SCALAR, "U-net expected solvent content (eq. 1; with --map)"),
        OutputSpec("solvent_fraction_combined", Kind.SCALAR, "Matthews and U-net combined (eq. 2; with --map): the solvent fraction to use"),
    )

    def predict(self, request: Request) -> Prediction:
        refl = request.get("reflections")
        phasing = request.get("phasing_map")  # a map read from an MTZ also knows its d_min
        crystal = refl if refl is not None else phasing
        cell = request.get("cell") or (crystal.cell if crystal is not None else None)
        spacegroup = request.get("spacegroup") or (crystal.spacegroup if crystal is not None else None)
        d_min = request.get("resolution")
        if d_min is None:
            d_min = refl.d_min if refl is not None else getattr(phasing, "d_min", None)
        if cell is None or spacegroup is None:
            raise CrysError("solvent-content needs --cell and --spacegroup, or --reflections or --map with both.")
        if d_min is None:
            raise CrysError("solvent-content needs --resolution, or --reflections to take it from.")
        if not d_min > 0:
            raise CrysError(f"The resolution must be a positive number of Å, not {d_min:g}.")
        seq: Sequence | None = request.get("sequence")
        mw = request.get("molecular_weight")
        messages = []
        if mw is None:
            if seq is None:
                raise CrysError("solvent-content needs --sequence or --molecular-weight.")
            mw = seq.weight()
            messages.append(f"molecular weight {mw:.0f} Da from {len(seq)} residues")
        elif seq is not None:
            messages.append(f"using the given molecular weight {mw:.0f} Da, not the sequence's {seq.weight():.0f} Da")
        request.check_cancelled()
        result = matthews.matthews_table(cell, spacegroup, float(mw), float(d_min))
        with_unet = request.get("phasing_map") is not None  # the U-net is most of the work then
        request.report(0.1 if with_unet else 0.5, "Matthews coefficients")
        best = result.best
        table = Table(
            columns=["copies", "matthews_coefficient", "solvent_fraction", "probability"],
            rows=[[r.copies, round(r.vm, 4), round(r.solvent_fraction, 4), round(r.probability, 4)]
                  for r in result.rows],
            help=f"Vm in Å³/Da; probabilities of Kantardjieff & Rupp (2003) at {d_min:.2f} Å",
        )
        messages.append(f"most probable: {best.copies} cop{'y' if best.copies == 1 else 'ies'} in the "
                        f"asymmetric unit, Vm {best.vm:.2f} Å³/Da, solvent {best.solvent_fraction:.1%} "
                        f"(P = {best.probability:.2f} at {d_min:.2f} Å)")
        extra = {}
        if with_unet:  # solvent-mask U-net, eq. 1-2 (crysplugins/runtime/solvent_unet.py)
            comb, notes = unet_solvent_content(request.get("phasing_map"), [r.solvent_fraction for r in result.rows],
                                               [r.probability for r in result.rows], d_min=float(d_min),
                                               progress=lambda f, m: request.report(0.1 + 0.85 * f, f"U-net {m}"))
            messages.extend(notes)
            messages.append(f"use solvent_fraction_combined = {comb.solvent_fraction:.3f} (eq. 2, from the map and "
                            f"Matthews) as the solvent fraction, e.g. for density modification; solvent_fraction "
                            f"{best.solvent_fraction:.3f} is the Matthews value alone")
            extra = {"solvent_fraction_unet": Scalar(comb.expected, "", "mean U-net solvent probability (eq. 1)"),
                     "solvent_fraction_combined": Scalar(comb.solvent_fraction, "", f"eq. 2 ({comb.branch})")}
        request.report(1.0, "done")
        return Prediction(
            scalars={
                "most_probable_copies": Scalar(float(best.copies), "", "copies in the asymmetric unit"),
                "solvent_fraction": Scalar(best.solvent_fraction, "", "1 - 1.23/Vm"),
                "matthews_coefficient": Scalar(best.vm, "Å³/Da", "V_asu / (copies * MW)"),
                **extra,
            },
            tables={"copies": table},
            messages=messages,
            meta={"molecular_weight_da": round(float(mw), 2), "asu_volume_a3": round(result.v_asu, 1),
                  "d_min": float(d_min), "spacegroup": spacegroup.hm,
                  "reference": "Kantardjieff & Rupp (2003) Protein Sci. 12:1865; CCP4 parameter table"},
        )

    def example_inputs(self) -> dict[str, Any]:
        """E. coli DHFR, PDB 1RX2 (cell, space group, SEQRES sequence, 1.80 Å), shipped in the package."""
        return crystal_example(EXAMPLE)


@hookimpl
def register_predictors(register):  # type: ignore[no-untyped-def]
    register(SolventContentPredictor())
