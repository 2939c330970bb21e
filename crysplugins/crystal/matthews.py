"""Matthews coefficient, solvent fraction and the Kantardjieff & Rupp (2003) probabilities.

Definitions (Matthews, 1968, J. Mol. Biol. 33:491):

* Matthews coefficient ``Vm = V_asu / (n * MW)`` in Å³/Da, where ``V_asu = V_cell / Z`` (Å³), ``Z`` the
  number of symmetry operations of the space group (centring included) and ``n`` the number of copies
  of a molecule of weight ``MW`` (Da) in the asymmetric unit;
* solvent fraction ``1 - 1.23 / Vm`` (1.23 = 1 / (N_A · ρ_protein) with the protein partial specific
  volume 0.74 cm³/g; CCP4's *matthews_coef* writes it as ``1 - 0.74 / (0.602 · Vm)`` = ``1 - 1.2292 / Vm``,
  which differs by less than 0.001 in the fraction for Vm > 1.3 Å³/Da).

Probabilities (Kantardjieff & Rupp, 2003, Protein Sci. 12:1865-1871): for each resolution bin the
frequency of Vm in the PDB was fitted with

    P(Vm) = p0 + A · exp(-exp(-z) - z·s + 1),   z = (Vm - Vm0) / w

and the probability of n copies is P(Vm(n)) normalised over all n with a positive solvent fraction.
The parameter table below is the one CCP4 uses: it is copied from CCP4's *ctruncate*
(``ctruncate_matthews.cpp``, N. Stein & C. Ballard, the Matthews code shared with *matthews_coef*), and
the same numbers appear in Pannu's *bp3* (``Crystal::Calculatematthews``).  Rows 0-12 are the protein
resolution bins (upper edge ``d_max`` in Å); the two last rows of CCP4's table (nucleic acid and
protein-nucleic acid complexes) are kept in :data:`KR_NUCLEIC` and :data:`KR_COMPLEX` for reference.

Bin choice (as ctruncate): the first bin whose upper edge is >= d_min; data worse than 5.0 Å use the
last protein bin (ctruncate would step into the nucleic-acid row there, which we take to be a slip).
``P(tot)`` of matthews_coef (the resolution-free estimate) is the sum of the 13 protein-bin curves.

Checked against the worked example printed in CCP4's matthews_coef documentation (Vm 3.98, 1.99,
1.33 Å³/Da at 5.0 Å: P(5.00) = 0.19, 0.80, 0.01; P(tot) = 0.09, 0.90, 0.01): see tests/test_matthews.py.
Only numpy and gemmi are used here.
"""
from __future__ import annotations

from dataclasses import dataclass

import gemmi
import numpy as np

from crysplugins.errors import CrysError

#: Protein volume per dalton, Å³/Da (partial specific volume 0.74 cm³/g; Matthews 1968).  The one value used
#: everywhere: solvent fraction = 1 - PROTEIN_VOLUME_PER_DALTON / Vm.
PROTEIN_VOLUME_PER_DALTON = 1.23

# Kantardjieff & Rupp (2003) fit parameters per resolution bin, protein crystals (CCP4 ctruncate table).
#: Upper edge of each protein resolution bin, Å.
KR_D_MAX = np.array([1.199, 1.501, 1.650, 1.801, 1.901, 2.001, 2.201, 2.401, 2.601, 2.801, 3.101, 3.501, 5.001])
KR_P0 = np.array([0.085, 0.312, 0.400, 0.503, 0.597, 0.729, 1.052, 1.781, 2.852, 3.386, 3.841, 4.281, 4.592])
KR_VM0 = np.array([2.052, 2.102, 2.122, 2.132, 2.140, 2.155, 2.171, 2.182, 2.191, 2.192, 2.205, 2.211, 2.210])
KR_W = np.array([0.213, 0.214, 0.220, 0.225, 0.226, 0.231, 0.236, 0.241, 0.242, 0.244, 0.244, 0.244, 0.245])
KR_A = np.array([28.38, 102.7, 187.5, 339.3, 434.1, 540.5, 686.2, 767.9, 835.9, 856.9, 854.0, 849.6, 846.7])
KR_S = np.array([0.953, 0.807, 0.775, 0.702, 0.648, 0.640, 0.635, 0.589, 0.584, 0.542, 0.500, 0.485, 0.480])
#: (p0, Vm0, w, A, s) for nucleic-acid crystals and protein-nucleic acid complexes (not used for proteins).
KR_NUCLEIC = (1.503, 2.256, 0.446, 136.6, 1.180)
KR_COMPLEX = (0.257, 2.324, 0.327, 47.10, 0.466)


def asu_volume(cell: gemmi.UnitCell, spacegroup: gemmi.SpaceGroup) -> float:
    """Volume of the asymmetric unit in Å³: cell volume / number of symmetry operations (with centring)."""
    z = len(spacegroup.operations())
    return float(cell.volume) / z


def matthews_coefficient(v_asu: float, molecular_weight: float, copies: int | np.ndarray = 1) -> np.ndarray | float:
    """Vm = V_asu / (copies * MW) in Å³/Da (V_asu in Å³, MW in Da)."""
    if molecular_weight <= 0:
        raise CrysError(f"The molecular weight must be positive, not {molecular_weight:g} Da.")
    return v_asu / (np.asarray(copies, dtype=float) * molecular_weight)


def solvent_fraction(vm: float | np.ndarray) -> float | np.ndarray:
    """Solvent fraction 1 - 1.23 / Vm (Vm in Å³/Da); negative values mean the copies do not fit."""
    return 1.0 - PROTEIN_VOLUME_PER_DALTON / np.asarray(vm, dtype=float)


def resolution_bin(d_min: float) -> int:
    """Index of the Kantardjieff & Rupp protein bin for a high-resolution limit ``d_min`` (Å)."""
    if not d_min > 0:
        raise CrysError(f"The resolution must be a positive number of Å, not {d_min:g}.")
    idx = int(np.searchsorted(KR_D_MAX, d_min, side="left"))
    return min(idx, len(KR_D_MAX) - 1)


def _curve(vm: np.ndarray, p0: float, vm0: float, w: float, a: float, s: float) -> np.ndarray:
    z = (vm - vm0) / w
    return p0 + a * np.exp(-np.exp(-z) - z * s + 1.0)


def kr_density(vm: float | np.ndarray, d_min: float | None = None) -> np.ndarray:
    """Unnormalised Kantardjieff & Rupp frequency of ``vm`` (Å³/Da) at resolution ``d_min`` (Å).

    ``d_min=None`` gives the resolution-free estimate (CCP4's P(tot)): the sum of all protein-bin curves.
    """
    v = np.asarray(vm, dtype=float)
    if d_min is None:
        return sum(_curve(v, *params) for params in zip(KR_P0, KR_VM0, KR_W, KR_A, KR_S))
    i = resolution_bin(d_min)
    return _curve(v, KR_P0[i], KR_VM0[i], KR_W[i], KR_A[i], KR_S[i])


def copy_probabilities(vm: np.ndarray, d_min: float | None = None) -> np.ndarray:
    """Probabilities of the candidate Vm values (one per copy number), normalised to sum to 1."""
    dens = kr_density(vm, d_min)
    total = float(np.sum(dens))
    return dens / total if total > 0 else np.full_like(dens, 1.0 / max(len(dens), 1))


@dataclass(frozen=True)
class MatthewsRow:
    """One candidate content of the asymmetric unit."""

    copies: int
    vm: float                # Å³/Da
    solvent_fraction: float  # 0..1
    probability: float       # normalised over the candidates


@dataclass(frozen=True)
class MatthewsResult:
    """All candidate copy numbers and the most probable one."""

    rows: list[MatthewsRow]
    molecular_weight: float  # Da, one copy
    v_asu: float             # Å³
    d_min: float | None      # Å, None: resolution-free estimate

    @property
    def best(self) -> MatthewsRow:
        return max(self.rows, key=lambda r: r.probability)


def matthews_table(cell: gemmi.UnitCell, spacegroup: gemmi.SpaceGroup, molecular_weight: float,
                   d_min: float | None = None, max_copies: int = 1000) -> MatthewsResult:
    """Vm, solvent fraction and probability for 1, 2, ... copies while the solvent fraction is positive.

    ``molecular_weight`` in Da (one copy), ``d_min`` in Å.  Raises CrysError when not even one copy fits.
    """
    v_asu = asu_volume(cell, spacegroup)
    vm1 = float(matthews_coefficient(v_asu, molecular_weight, 1))
    n_max = int(np.floor(vm1 / PROTEIN_VOLUME_PER_DALTON - 1e-12))
    if n_max < 1:
        raise CrysError(f"A molecule of {molecular_weight:.0f} Da does not fit in the asymmetric unit "
                        f"({v_asu:.0f} Å³; Vm would be {vm1:.2f} Å³/Da, below {PROTEIN_VOLUME_PER_DALTON}).")
    n_max = min(n_max, max_copies)
    copies = np.arange(1, n_max + 1)
    vm = vm1 / copies
    prob = copy_probabilities(vm, d_min)
    rows = [MatthewsRow(int(n), float(v), float(solvent_fraction(v)), float(p))
            for n, v, p in zip(copies, vm, prob)]
    return MatthewsResult(rows=rows, molecular_weight=float(molecular_weight), v_asu=v_asu, d_min=d_min)
