"""Which mask would make the provider mode beat the local-rms mode? Providers that know the truth, on the tuning sets.

    OMP_NUM_THREADS=1 python docs/lab-notes/density-modification/mask_oracle_study.py SET VARIANT [LEVELS] > rows.jsonl

SET: small | lowres (data_build/dm_dev_*.npz, benchmarks/build_dm_dev_sources.py) | dev (the dev split of
benchmarks/bench_density_modify.py).  VARIANT: unet (the shipped U-net; unetconst: its ranks at weight 0.5 in every
cycle; unet08: 0.8 → 0); sched / const / pure (minus the local standard deviation of the true map at d_min + 1 Å in
the default schedule / at weight 0.5 in every cycle / alone); envsched (the model's solvent mask); noisyS (the model's
solvent mask + S × a smooth unit Gaussian error field of σ 3 Å; inf: the field alone).  Seed 1, levels 50 and 65 by
default, ensemble off.  Rows: mask_oracle.json.  Another U-net card: UNET_MODEL=NAME (with CRYSPLUGINS_MODELS=its
folder); rows of two: unet_lv_weighted.json.
"""
import os, sys, json
from pathlib import Path
import numpy as np
sys.path.insert(0, 'benchmarks')
import bench_density_modify as b
from crysplugins.crystal.dm import DMSettings
from crysplugins.crystal.dm.masking import LocalDeviation
from crysplugins.interface import CrystalMap

which, variant = sys.argv[1], sys.argv[2]
levels = [float(x) for x in (sys.argv[3].split(',') if len(sys.argv) > 3 else ['50', '65'])]
if which == 'dev':
    srcs = [s for s in b.load_crystals(Path('data_build/dm_bench_sources.npz')) if s.name in b.DEV_SPLIT]
else:
    srcs = b.load_sources(Path(f'data_build/dm_dev_{which}.npz'))
noise_sd = float(variant.split('noisy')[1]) if variant.startswith('noisy') else None
if noise_sd is not None:
    variant = 'sched'
use_unet = variant.startswith('unet')
if use_unet:
    from crysplugins.dm_command import unet_mask_provider
    unet = unet_mask_provider(os.environ.get("UNET_MODEL", "solvent-unet"))
    variant = {'unet': 'sched', 'unetconst': 'const', 'unet08': 'w08'}[variant]
envelope_oracle = variant.startswith('env')
variant = variant.removeprefix('env')
base = DMSettings(ensemble_below=0)
if variant == 'const':
    base.mask.provider_weight_final = None
elif variant == 'w08':
    base.mask.provider_weight = 0.8
elif variant == 'pure':
    base.mask.provider_weight, base.mask.provider_weight_final = 1.0, None
for src in srcs:
    for level in levels:
        case = b.make_case(src, level, 1)
        cache = {}
        def envelope(req, src=src):
            return src.mask_map()

        def noisy(req, src=src, cache=cache):
            if 'noisy' not in cache:
                m = src.mask.astype(np.float64)
                rng = np.random.default_rng(int(level) * 7 + 1)
                z = rng.standard_normal(m.shape)
                # a smooth error field: Gaussian of sigma 3 A in every direction (grid spacing from the cell)
                f = [np.fft.fftfreq(n) * n / L for n, L in zip(m.shape, (src.cell.a, src.cell.b, src.cell.c))]
                k2 = f[0][:, None, None] ** 2 + f[1][None, :, None] ** 2 + f[2][None, None, :] ** 2
                z = np.real(np.fft.ifftn(np.fft.fftn(z) * np.exp(-2 * np.pi ** 2 * 9.0 * k2)))
                z /= z.std()
                score = m + noise_sd * z if np.isfinite(noise_sd) else z  # inf: the error field alone
                cut = np.quantile(score, 1 - m.mean())
                cache['acc'] = float(((score >= cut) == (m > 0.5)).mean())
                cache['noisy'] = CrystalMap.from_array(score, src.cell, src.spacegroup)
            return cache['noisy']

        def provider(req, case=case, cache=cache):
            shape = req.map.array.shape
            if shape not in cache:
                rho = case.refl.to_map(case.f_true, shape)
                cache[shape] = -LocalDeviation(case.refl.cell, shape)(rho, case.refl.d_min + 1.0, 'sd')
            return cache[shape]
        row = {'name': case.name, 'level': level, 'start': round(case.start_error, 2)}
        row['lv'] = b.run_ours(case, base)['error']
        chosen = noisy if noise_sd is not None else envelope if envelope_oracle else unet if use_unet else provider
        row['oracle'] = b.run_ours(case, base, chosen)['error']
        if 'acc' in cache:
            row['accuracy'] = round(cache['acc'], 4)
        print(json.dumps(row), flush=True)
