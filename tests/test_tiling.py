"""Overlapping periodic tiling (crysplugins.runtime.tiling): coverage, exact reassembly, wrapping."""
from __future__ import annotations

import numpy as np
import pytest

from crysplugins.runtime.tiling import coverage, extract_window, predict_tiled, tile_origins, tile_starts

SHAPE = (50, 37, 101)  # non-cubic, no axis a multiple of 48, one axis shorter than the window


def test_every_voxel_covered_and_counts_add_up():
    count = coverage(SHAPE, window=48, overlap=16)
    assert count.min() >= 1
    n_tiles = len(tile_origins(SHAPE, 48, 16))
    assert count.sum() == n_tiles * 48 ** 3  # every tile voxel lands on exactly one cell voxel


def test_starts_spacing_never_exceeds_window():
    for n in (1, 7, 37, 48, 49, 50, 96, 101, 200):
        starts = tile_starts(n, 48, 16)
        gaps = np.diff(starts + [starts[0] + n])
        assert gaps.max() <= 48, (n, starts)


def test_identity_network_reassembles_the_cell_exactly():
    rng = np.random.default_rng(0)
    arr = rng.standard_normal(SHAPE).astype(np.float32)
    out = predict_tiled(arr, lambda x: x, window=48, overlap=16, batch_size=3)
    assert out.shape == (1,) + SHAPE
    np.testing.assert_allclose(out[0], arr, atol=1e-5)


def test_tiles_wrap_periodically():
    arr = np.arange(np.prod(SHAPE), dtype=np.float32).reshape(SHAPE)
    w = extract_window(arr, (45, 30, 90), 48)
    assert w[0, 0, 0] == arr[45, 30, 90]
    assert w[5, 7, 11] == arr[0, 0, 0]            # 45+5 = 50 -> 0, 30+7 = 37 -> 0, 90+11 = 101 -> 0
    assert w[47, 47, 47] == arr[(45 + 47) % 50, (30 + 47) % 37, (90 + 47) % 101]


def test_position_dependent_network_is_blended_not_copied():
    # a "network" that returns the voxel's position inside its tile: the blend is a weighted mean of
    # different tile positions, so it must lie within [0, 47] and differ from a single tile's answer
    arr = np.zeros(SHAPE, dtype=np.float32)
    ramp = np.broadcast_to(np.arange(48, dtype=np.float32)[:, None, None], (48, 48, 48))
    out = predict_tiled(arr, lambda x: np.broadcast_to(ramp, x.shape).copy(), window=48, overlap=16)
    assert out.min() >= 0 and out.max() <= 47
    assert np.unique(np.round(out[0, :, 0, 0], 3)).size > 10


def test_overlap_must_be_smaller_than_window():
    with pytest.raises(ValueError):
        tile_starts(100, 16, 16)


def test_mirror_views_average_a_position_dependent_network_and_leave_an_equivariant_one():
    from crysplugins.runtime.tiling import FLIP_SETS, with_flips

    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 1, 6, 6, 6)).astype(np.float32)
    same = with_flips(lambda a: 2.0 * a, 8)(x)  # voxel-wise: every view agrees
    assert np.allclose(same, 2.0 * x)
    ramp = np.arange(6, dtype=np.float64)[None, None, :, None, None]  # depends on the position along axis 2
    y = with_flips(lambda a: a * 0 + ramp, 2)(x)  # views () and (2,): ramp and its mirror averaged
    assert np.allclose(y, 2.5)
    # a two-channel network like the U-net's (b, 2, w, w, w) output, with ramps along two different axes:
    # every output axis is mirrored back, so 8 views average each ramp to its mean in every channel
    ramps = np.stack([np.broadcast_to(ramp, (1, 1, 6, 6, 6))[0, 0],
                      np.broadcast_to(np.arange(6.0)[None, None, None, None, :], (1, 1, 6, 6, 6))[0, 0]])
    two = with_flips(lambda a: np.broadcast_to(ramps, (len(a), 2, 6, 6, 6)), 8)(x)
    assert two.shape == (2, 2, 6, 6, 6) and np.allclose(two, 2.5)
    assert with_flips(np.sin, 1)(x) is not None and len(FLIP_SETS) == 8
    with pytest.raises(ValueError):
        with_flips(np.sin, 9)
