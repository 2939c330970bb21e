import sys; sys.path.insert(0, 'benchmarks')
import numpy as np
from bench_hand import demo_example
from crysplugins.evaluation.compare import true_data
from crysplugins.crystal.fourier import FourierGrid
from h17stereo_prototype import site_fits
from crysplugins.runtime.hand import hand_logits, rms_normalised
ex = demo_example(); cell, hkl, f, phi = true_data(ex)
print([m for m in dir(FourierGrid) if not m.startswith('__')])
import gemmi
from crysplugins.crystal.phasing_input import shannon_grid_shape
from crysplugins.crystal.maps import invert_grid
shape = shannon_grid_shape(cell, gemmi.SpaceGroup('P 1'), 1.5)
rho = FourierGrid(hkl, shape, float(cell.volume)).to_map(f * np.exp(1j * np.radians(phi)))
params = cell.parameters; print(params, shape)
for name, m in (('true', rho), ('inverted', invert_grid(rho))):
    fits = site_fits(m, params, n_sites=60, n_rotations=1000, stride=2, variants=True)
    s = (fits[np.argsort(-fits.max(1))[:5]] @ [1, -1]).sum()
    b = -float(hand_logits(rms_normalised(m)[None], 'fragment_hand', cells=[params])[0])
    print(name, 'stereo', round(float(s), 2), 'fragment_hand score (>0 keeps)', round(b, 3))
