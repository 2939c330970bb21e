"""Histogram matching of the protein region (Zhang & Main 1990, Acta Cryst. A46, 41–46; Cowtan's DM).

A correct protein map at a given resolution has a characteristic, positively skewed density histogram:
few deep holes, a long tail of atom peaks.  Phase errors make the histogram more Gaussian.  Matching
replaces every protein-region voxel by the reference density of the same rank (its quantile), after the
reference histogram has been given the current region's mean and standard deviation, so only the shape
changes (as DM does: the map has no absolute scale and no F000).  Truncation of the lowest densities
(:mod:`.protein`) is the crudest case of the same idea.

The reference shape is a table of standardised quantiles (mean 0, SD 1) of protein-region density as a
function of resolution (:data:`REFERENCE_D`, Å), measured on deposited models that are not in the
density-modification benchmark (``benchmarks/make_dm_histograms.py``).
"""
from __future__ import annotations

import numpy as np

#: Resolutions (Å) of the reference table and standardised protein-density quantiles at probabilities
#: (i + ½)/60, mean of 8 chains of families F02/F03 (benchmarks/out/dm_histograms.json).
REFERENCE_D = np.array([1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0])
REFERENCE_Q = np.array([
    [-1.262, -1.167, -1.107, -1.059, -1.016, -0.977, -0.940, -0.905, -0.871, -0.839, -0.807, -0.777, -0.747, -0.718, -0.690, -0.661, -0.634, -0.606, -0.578, -0.551, -0.524, -0.497, -0.470, -0.442, -0.415, -0.387, -0.359, -0.331, -0.303, -0.274, -0.245, -0.214, -0.183, -0.150, -0.116, -0.080, -0.041, -0.002, 0.041, 0.087, 0.136, 0.189, 0.245, 0.306, 0.371, 0.443, 0.519, 0.602, 0.693, 0.788, 0.892, 1.006, 1.131, 1.268, 1.424, 1.605, 1.823, 2.106, 2.531, 3.427],
    [-1.312, -1.187, -1.116, -1.061, -1.017, -0.979, -0.943, -0.910, -0.879, -0.849, -0.820, -0.791, -0.763, -0.737, -0.711, -0.685, -0.660, -0.633, -0.607, -0.581, -0.556, -0.530, -0.504, -0.478, -0.451, -0.425, -0.397, -0.369, -0.340, -0.310, -0.279, -0.246, -0.212, -0.176, -0.138, -0.098, -0.056, -0.010, 0.038, 0.089, 0.144, 0.205, 0.270, 0.339, 0.411, 0.491, 0.575, 0.666, 0.762, 0.869, 0.977, 1.099, 1.229, 1.369, 1.530, 1.706, 1.912, 2.171, 2.528, 3.227],
    [-1.470, -1.310, -1.220, -1.152, -1.097, -1.050, -1.008, -0.970, -0.934, -0.898, -0.865, -0.833, -0.802, -0.773, -0.743, -0.714, -0.685, -0.656, -0.628, -0.599, -0.570, -0.541, -0.512, -0.483, -0.454, -0.424, -0.392, -0.360, -0.326, -0.292, -0.256, -0.219, -0.180, -0.139, -0.096, -0.051, -0.001, 0.050, 0.105, 0.161, 0.224, 0.288, 0.358, 0.433, 0.507, 0.587, 0.671, 0.763, 0.855, 0.955, 1.060, 1.175, 1.295, 1.425, 1.562, 1.718, 1.895, 2.107, 2.409, 2.980],
    [-1.419, -1.251, -1.161, -1.095, -1.042, -0.997, -0.957, -0.922, -0.889, -0.859, -0.830, -0.803, -0.777, -0.753, -0.730, -0.707, -0.684, -0.662, -0.641, -0.619, -0.597, -0.573, -0.551, -0.526, -0.501, -0.476, -0.449, -0.422, -0.393, -0.362, -0.328, -0.292, -0.250, -0.206, -0.158, -0.106, -0.052, 0.006, 0.068, 0.135, 0.203, 0.274, 0.352, 0.430, 0.512, 0.600, 0.692, 0.786, 0.886, 0.990, 1.104, 1.225, 1.350, 1.481, 1.624, 1.774, 1.951, 2.161, 2.439, 2.921],
    [-1.571, -1.372, -1.255, -1.175, -1.115, -1.065, -1.015, -0.974, -0.936, -0.897, -0.863, -0.831, -0.800, -0.772, -0.744, -0.718, -0.690, -0.663, -0.636, -0.610, -0.583, -0.555, -0.528, -0.500, -0.471, -0.441, -0.411, -0.378, -0.343, -0.308, -0.267, -0.227, -0.184, -0.140, -0.093, -0.040, 0.013, 0.069, 0.128, 0.191, 0.255, 0.325, 0.396, 0.473, 0.550, 0.635, 0.723, 0.811, 0.907, 1.003, 1.110, 1.220, 1.337, 1.463, 1.596, 1.756, 1.925, 2.113, 2.353, 2.766],
    [-1.704, -1.472, -1.353, -1.264, -1.191, -1.125, -1.072, -1.024, -0.978, -0.935, -0.895, -0.858, -0.825, -0.791, -0.759, -0.726, -0.694, -0.664, -0.632, -0.603, -0.571, -0.539, -0.507, -0.474, -0.440, -0.405, -0.370, -0.333, -0.294, -0.252, -0.209, -0.165, -0.119, -0.070, -0.022, 0.030, 0.080, 0.134, 0.193, 0.251, 0.315, 0.377, 0.442, 0.513, 0.587, 0.664, 0.744, 0.829, 0.917, 1.011, 1.115, 1.217, 1.333, 1.446, 1.576, 1.719, 1.872, 2.050, 2.250, 2.628],
    [-1.844, -1.584, -1.429, -1.328, -1.253, -1.179, -1.120, -1.063, -1.015, -0.965, -0.921, -0.881, -0.843, -0.803, -0.763, -0.727, -0.690, -0.654, -0.621, -0.584, -0.549, -0.511, -0.474, -0.438, -0.403, -0.364, -0.327, -0.286, -0.240, -0.198, -0.154, -0.111, -0.065, -0.019, 0.031, 0.083, 0.135, 0.187, 0.242, 0.301, 0.363, 0.423, 0.492, 0.559, 0.629, 0.703, 0.782, 0.856, 0.938, 1.016, 1.110, 1.208, 1.304, 1.407, 1.525, 1.654, 1.795, 1.951, 2.151, 2.536],
])


def match_histogram(values: np.ndarray, quantiles: np.ndarray, weight: float = 1.0) -> np.ndarray:
    """``values`` moved (by ``weight`` ∈ [0, 1]) to the reference histogram of standardised ``quantiles``
    (at probabilities (i + ½)/N, i = 0…N − 1), keeping their mean and standard deviation (e/Å³).  Ties keep
    their order of appearance; the result has the same ranks as the input."""
    v = np.asarray(values, dtype=np.float64)
    if v.size < 2 or weight <= 0:
        return v.copy()
    q = np.asarray(quantiles, dtype=np.float64)
    q = (q - q.mean()) / max(q.std(), 1e-12)  # a standardised table stays standardised after interpolation
    order = np.argsort(v, kind="stable")
    p = np.empty(v.size)
    p[order] = (np.arange(v.size) + 0.5) / v.size
    target = np.interp(p, (np.arange(q.size) + 0.5) / q.size, q)
    target = (target - target.mean()) / max(target.std(), 1e-12)
    target = v.mean() + v.std() * target
    return (1.0 - weight) * v + weight * target


def reference_quantiles(d_min: float) -> np.ndarray:
    """Standardised protein-density quantiles at resolution ``d_min`` (Å), interpolated in the table."""
    d = float(np.clip(d_min, REFERENCE_D[0], REFERENCE_D[-1]))
    i = int(np.clip(np.searchsorted(REFERENCE_D, d) - 1, 0, len(REFERENCE_D) - 2))
    t = (d - REFERENCE_D[i]) / (REFERENCE_D[i + 1] - REFERENCE_D[i])
    return (1.0 - t) * REFERENCE_Q[i] + t * REFERENCE_Q[i + 1]
