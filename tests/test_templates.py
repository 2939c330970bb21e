"""Appendix E template post-processing (paper 000) and B-factor blurring."""
import gemmi
import numpy as np
import pytest

from crysplugins.crystal.templates import blur, postprocess_template
from crysplugins_test_support import blob_structure


def test_postprocess_matches_hand_computed_example():
    # 4 voxels, no blur (B = 0), map already on its own scale (standardise=False).
    raw = np.array([2.0, -1.0, 0.5, -1.5]).reshape(4, 1, 1)
    cell = gemmi.UnitCell(4, 1, 1, 90, 90, 90)
    out = postprocess_template(raw, cell, b_factor=0.0, standardise=False).ravel()
    # By hand: mean 0, rmsd sqrt(1.875) = 1.3693, cut 1.7116 -> only voxel 0 is "strong";
    # positive = [T, F, T, F]; modified = (raw + 1.23) * pos * strong - 1.23 = [2.0, -1.23, -1.23, -1.23];
    # blended = 0.95 modified + 0.05 raw = [2.0, -1.2185, -1.1435, -1.2435];
    # min-max to [-1, 1]: [1, -0.984585, -0.938338, -1].
    expected = np.array([1.0, -0.984585, -0.938338, -1.0])
    np.testing.assert_allclose(out, expected, atol=1e-5)


def _carbon_density(b_iso: float) -> tuple[np.ndarray, gemmi.UnitCell]:
    st = blob_structure("P 1", cell=(12, 13, 14, 90, 100, 110), n=1, centre=(3.0, 4.0, 5.0), spread=0.0,
                        b_iso=b_iso)
    dc = gemmi.DensityCalculatorX()
    dc.d_min = 1.0
    dc.rate = 3.0
    dc.blur = 0
    dc.set_grid_cell_and_spacegroup(st)
    dc.put_model_density_on_grid(st[0])
    return np.array(dc.grid, copy=True), st.cell


def test_blur_adds_b_factor():
    sharp, cell = _carbon_density(20.0)
    target, _ = _carbon_density(45.0)
    blurred = blur(sharp, cell, 25.0)
    assert np.corrcoef(blurred.ravel(), target.ravel())[0, 1] > 0.999
    # electrons are conserved by a blur (F000 untouched)
    assert blurred.sum() == pytest.approx(sharp.sum(), rel=1e-6)
