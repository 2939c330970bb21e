"""solvent-content with a phasing map: U-net expected solvent content (eq. 1) + combination (eq. 2)."""
from __future__ import annotations

import numpy as np
import pytest

from crysplugins.interface import Request
from crysplugins.plugins.solvent_content import SolventContentPredictor
from crysplugins.runtime.solvent_unet import unet_solvent_content
from crysplugins_test_support import blob_structure  # noqa: E402


@pytest.fixture(scope="module")
def phasing_map():
    from crysplugins.datasets.phasing import phasing_map as make_map, prepare_source, simulate_phasing

    rng = np.random.default_rng(4)
    st = blob_structure(cell=(36.0, 40.0, 44.0, 90, 90, 90), n=150, centre=(8.0, 9.0, 10.0), spread=4.0, rng=rng)
    src = prepare_source(st, 3.0)
    return make_map(src, simulate_phasing(src, 40.0, rng))


def test_combination_with_matthews_candidates(phasing_map):
    comb, notes = unet_solvent_content(phasing_map, [0.3, 0.65], [0.5, 0.5], d_min=3.0)
    assert comb.branch in ("matthews", "conflation", "unet")
    assert 0.0 < comb.expected < 1.0 and 0.0 < comb.solvent_fraction < 1.0
    if comb.branch == "matthews":
        assert comb.solvent_fraction in (0.3, 0.65)
    if comb.branch == "unet":
        assert comb.solvent_fraction == comb.expected
    assert any("eq. 2" in n for n in notes)


def test_solvent_content_plugin_takes_a_phasing_map(phasing_map):
    pred = SolventContentPredictor()
    names = [s.name for s in pred.inputs]
    assert "phasing_map" in names
    out = pred.predict(Request(inputs={"cell": phasing_map.cell, "spacegroup": phasing_map.spacegroup,
                                       "molecular_weight": 8000.0, "resolution": 3.0,
                                       "phasing_map": phasing_map}))
    assert "solvent_fraction_combined" in out.scalars and "solvent_fraction_unet" in out.scalars
    plain = pred.predict(Request(inputs={"cell": phasing_map.cell, "spacegroup": phasing_map.spacegroup,
                                         "molecular_weight": 8000.0, "resolution": 3.0}))
    assert "solvent_fraction_combined" not in plain.scalars
    assert plain.scalars["solvent_fraction"].value == out.scalars["solvent_fraction"].value
