"""Turn slices of a crystal map into RGBA images (numpy only; no Qt here).

A slice through the unit cell is taken perpendicular to one cell axis (a, b or c) at a grid index and
shown in the plane of the two other axes.  Density values are shown in units of the map's standard
deviation (σ, over the whole cell): ``z = (ρ - mean) / σ``; the colour ramp runs from -1 σ (dark) to
``level + 2`` σ (white).  Probability maps and masks (:func:`is_fraction_map`) are contoured in their own
units instead (``absolute=True``: a level of 0.5 means P = 0.5), with the ramp over their whole range.
Pixels where the value crosses the level draw the contour line.  Slices are upsampled periodically
(bilinear, the cell wraps) before contouring so that lines are smooth.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: For a slice perpendicular to axis k: the (horizontal, vertical) axes shown and the cell angle between them.
PLANE_AXES: dict[int, tuple[int, int]] = {0: (1, 2), 1: (0, 2), 2: (0, 1)}
AXIS_NAMES = "abc"
#: Index of the cell angle (alpha, beta, gamma = 3, 4, 5 in a gemmi cell parameter list) between the shown axes.
PLANE_ANGLE: dict[int, int] = {0: 3, 1: 4, 2: 5}
#: map units that mark a probability or a 0/1 mask (contoured in their own units, not in σ)
FRACTION_UNITS = ("P(", "probability", "=1", "fraction")


@dataclass(frozen=True)
class MapStats:
    """Mean and standard deviation of a map over the whole cell (map units)."""

    mean: float
    sigma: float
    minimum: float
    maximum: float
    binary: bool = False   # only two values (a mask): contoured half-way between them, whatever the σ level

    @classmethod
    def of(cls, array: np.ndarray) -> "MapStats":
        arr = np.asarray(array, dtype=np.float32).ravel()
        mean = float(arr.mean(dtype=np.float64))
        d = arr - np.float32(mean)
        sigma = float(np.sqrt(np.dot(d, d) / max(d.size, 1)))
        lo, hi = float(arr.min()), float(arr.max())
        binary = hi > lo and not np.count_nonzero((arr != lo) & (arr != hi))
        return cls(mean, sigma if sigma > 0 else 1.0, lo, hi, bool(binary))

    def contour_level(self, level: float) -> float:
        """The level (in σ) to contour: ``level``, or half-way between the two values of a mask."""
        if self.binary:
            return ((self.minimum + self.maximum) / 2 - self.mean) / self.sigma
        return level


def is_fraction_map(units: str, stats: MapStats) -> bool:
    """True for a probability map or a mask: its units say so, or it holds only two values."""
    return stats.binary or any(word in (units or "") for word in FRACTION_UNITS)


def level_to_z(stats: MapStats, level: float, absolute: bool) -> float:
    """The contour level in σ units: ``level`` in map units (``absolute``) or in σ (masks half-way)."""
    if absolute:
        return (level - stats.mean) / stats.sigma
    return stats.contour_level(level)


def take_slice(array: np.ndarray, axis: int, index: int) -> np.ndarray:
    """The 2-D slice perpendicular to ``axis`` at grid ``index``, indexed [horizontal, vertical]."""
    index = int(index) % array.shape[axis]
    return array[(slice(None),) * axis + (index,)]  # a view, no copy


def take_slice_fractional(array: np.ndarray, axis: int, fraction: float,
                          shape: tuple[int, int]) -> np.ndarray:
    """A slice of ``array`` at a fractional position, resampled (nearest grid point) to ``shape``.

    Used to overlay a map sampled on another grid of the same cell: voxel (i, j) of the result is the
    value nearest the fractional coordinates (i / shape[0], j / shape[1]) of the shown plane.
    """
    n = array.shape[axis]
    sl = take_slice(array, axis, int(round(fraction * n)) % n)
    h_idx = (np.arange(shape[0]) * sl.shape[0] / shape[0]).round().astype(int) % sl.shape[0]
    v_idx = (np.arange(shape[1]) * sl.shape[1] / shape[1]).round().astype(int) % sl.shape[1]
    return sl[np.ix_(h_idx, v_idx)]


def upsample_periodic(img: np.ndarray, factor: int) -> np.ndarray:
    """Bilinear upsampling by an integer factor with periodic wrap (the unit cell repeats)."""
    if factor <= 1:
        return np.asarray(img, dtype=np.float32)
    img = np.asarray(img, dtype=np.float32)
    out = img
    for ax in (0, 1):
        n = out.shape[ax]
        pos = np.arange(n * factor, dtype=np.float32) / factor
        i0 = np.floor(pos).astype(int)
        t = (pos - i0).astype(np.float32)
        i1 = (i0 + 1) % n
        a = np.take(out, i0, axis=ax)
        b = np.take(out, i1, axis=ax)
        shape = [1, 1]
        shape[ax] = -1
        t = t.reshape(shape)
        out = a * (1 - t) + b * t
    return out


def upsample_factor(shape: tuple[int, int], target: int = 320, cap: int = 8) -> int:
    """Integer factor that brings the longer side of a slice near ``target`` pixels."""
    return int(min(cap, max(1, int(np.ceil(target / max(shape))))))


def _ramp(stops: list[tuple[float, tuple[int, int, int]]]) -> np.ndarray:
    x = np.linspace(0, 1, 256)
    pos = np.array([s[0] for s in stops])
    cols = np.array([s[1] for s in stops], dtype=float)
    lut = np.stack([np.interp(x, pos, cols[:, c]) for c in range(3)], axis=1)
    return lut.astype(np.uint8)


#: Colour ramps (256 x RGB): density (dark navy -> blue -> white) and a warm one for side-by-side maps.
LUT_DENSITY = _ramp([(0.0, (8, 10, 30)), (0.45, (30, 60, 150)), (0.75, (120, 170, 235)), (1.0, (255, 255, 255))])
LUT_WARM = _ramp([(0.0, (25, 8, 8)), (0.45, (140, 45, 20)), (0.75, (235, 150, 60)), (1.0, (255, 250, 225))])
CONTOUR_PRIMARY = (90, 200, 255)
CONTOUR_SECOND = (255, 120, 40)


def contour_mask(z: np.ndarray, level: float, thick: bool = True) -> np.ndarray:
    """Pixels on the ``level`` iso-line: at or above ``level`` with a 4-neighbour below (periodic)."""
    above = z >= level
    edge = np.zeros_like(above)
    for ax in (0, 1):
        for shift in (1, -1):
            edge |= above & ~np.roll(above, shift, axis=ax)
    if thick:
        edge |= np.roll(edge, 1, axis=0) | np.roll(edge, 1, axis=1)
    return edge


def render_slice(values: np.ndarray, stats: MapStats, level: float, lut: np.ndarray = LUT_DENSITY,
                 contour: tuple[int, int, int] | None = CONTOUR_PRIMARY, factor: int = 1,
                 overlay: np.ndarray | None = None, overlay_stats: MapStats | None = None,
                 overlay_level: float | None = None, absolute: bool = False,
                 overlay_absolute: bool = False) -> np.ndarray:
    """RGBA image (rows = vertical axis, top row = highest coordinate) of a slice [horizontal, vertical].

    ``level`` is in σ, or in the map's own units when ``absolute`` (probabilities, masks).  ``overlay``
    (same shape as ``values``) adds the contour of a second map at ``overlay_level`` (σ, or its own units
    when ``overlay_absolute``).
    """
    z = (upsample_periodic(values, factor) - stats.mean) / stats.sigma
    level = level_to_z(stats, level, absolute)
    if absolute:
        lo, hi = (stats.minimum - stats.mean) / stats.sigma, (stats.maximum - stats.mean) / stats.sigma
    elif stats.binary:
        lo, hi = stats.contour_level(0) - 1.0, level + 1.0
    else:
        lo, hi = -1.0, level + 2.0
    t = np.clip((z - lo) / max(hi - lo, 1e-6), 0.0, 1.0)
    rgb = lut[(t * 255).astype(np.uint8)]
    if contour is not None:
        rgb[contour_mask(z, level)] = contour
    if overlay is not None and overlay_stats is not None:
        z2 = (upsample_periodic(overlay, factor) - overlay_stats.mean) / overlay_stats.sigma
        lev2 = level_to_z(overlay_stats, level if overlay_level is None else overlay_level, overlay_absolute)
        rgb[contour_mask(z2, lev2)] = CONTOUR_SECOND
    # [h, v] -> image rows = v (flipped so that the axis points up), columns = h
    rgb = np.ascontiguousarray(np.transpose(rgb, (1, 0, 2))[::-1])
    alpha = np.full(rgb.shape[:2] + (1,), 255, dtype=np.uint8)
    return np.ascontiguousarray(np.concatenate([rgb, alpha], axis=2))


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two arrays of the same shape (NaN when either is constant).

    float32 work arrays and BLAS dot products keep a 1.4 M-voxel map to a few ms (relative error ~1e-5).
    """
    x = np.asarray(a, dtype=np.float32).ravel()
    y = np.asarray(b, dtype=np.float32).ravel()
    x = x - np.float32(x.mean(dtype=np.float64))
    y = y - np.float32(y.mean(dtype=np.float64))
    denom = float(np.sqrt(float(np.dot(x, x)) * float(np.dot(y, y))))
    return float(np.dot(x, y)) / denom if denom > 0 else float("nan")
