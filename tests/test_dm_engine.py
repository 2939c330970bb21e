"""The density-modification engine (crysplugins.crystal.dm), ``crysplugins density-modify`` and the
``cctbx-dm`` refiner (its real run is skipped when cctbx-base is not installed).

A 5-residue fragment placed in a P 21 21 21 cell (so symmetry mates, centric zones and ~55 % solvent are
real) gives exact structure factors; phases get von Mises errors with honest figures of merit.
"""
from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import gemmi
import numpy as np
import pytest

from crysplugins.cli import main
from crysplugins.crystal.dm import DMSettings, ReflectionSet, run_dm
from crysplugins.crystal.dm.hl import fom_from_kappa, hl_from_phase_fom, kappa_from_fom, phase_fom_from_hl
from crysplugins.crystal.dm.masking import resample
from crysplugins.crystal.dm.engine import engine_grid, ensemble_radii
from crysplugins.crystal.dm.settings import ENSEMBLE_RADII, SolventSettings
from crysplugins.crystal.dm.solvent import modify_solvent
from crysplugins.crystal.io import make_mtz
from crysplugins.errors import CrysError
from crysplugins.host import Host
from crysplugins.plugins import cctbx_dm
from crysplugins_test_support import fragment_structure_factors

DATA = Path(__file__).parent / "data"


def make_crystal():
    """(reflections, true phases, phases with errors (radians), FOMs) of the fragment in P 21 21 21."""
    st, hkl, f = fragment_structure_factors()
    refl = ReflectionSet(st.cell, gemmi.SpaceGroup("P 21 21 21"), hkl, np.abs(f), 0.02 * np.abs(f))
    rng = np.random.default_rng(3)
    kappa = np.full(len(refl.hkl), 2.0)
    err = rng.vonmises(0.0, kappa)
    fom = fom_from_kappa(kappa)
    c = refl.centric
    flip = rng.random(int(c.sum())) < 0.2
    err[c] = np.where(flip, np.pi, 0.0)
    fom[c] = 0.6
    phi = np.angle(f) + err
    return refl, np.angle(f), phi, fom


@pytest.fixture(scope="module")
def crystal():
    return make_crystal()


def test_hl_phase_fom_round_trip(crystal):
    refl, _, phi, fom = crystal
    hl = hl_from_phase_fom(phi, fom, refl.centric)
    phi2, fom2 = phase_fom_from_hl(hl, refl.centric, refl.centric_phase)
    assert np.allclose(fom2, fom, atol=2e-3)
    d = np.abs(np.angle(np.exp(1j * (phi2 - phi))))
    assert d[~refl.centric].max() < 1e-6
    assert d[refl.centric].max() < 1e-3  # centric phases sit on their restriction already
    # bimodal coefficients: the numerical centroid agrees with the closed form when C = D = 0 is perturbed
    hl_b = hl.copy()
    hl_b[:, 2] = 1e-9
    phi3, fom3 = phase_fom_from_hl(hl_b, refl.centric, refl.centric_phase)
    assert np.allclose(fom3, fom2, atol=5e-3)


def test_fom_helpers_are_inverse():
    k = np.array([0.0, 0.5, 1.0, 3.0, 20.0])
    assert np.allclose(kappa_from_fom(fom_from_kappa(k)), k, rtol=1e-2, atol=1e-3)
    assert fom_from_kappa(np.array([0.0]))[0] == pytest.approx(0.0, abs=1e-6)
    assert fom_from_kappa(np.array([1.0]))[0] == pytest.approx(0.4464, abs=2e-3)  # I1(1)/I0(1)


def test_symmetric_result_stays_symmetric_and_improves(crystal):
    refl, phi_true, phi, fom = crystal
    hl = hl_from_phase_fom(phi, fom, refl.centric)
    settings = DMSettings(initial_steps=2, shrink_steps=4, final_steps=2)
    res = run_dm(refl, hl, settings, solvent_fraction=0.55)
    sym = res.map.grid.clone()
    sym.symmetrize_avg()
    arr = res.map.array
    assert np.abs(np.array(sym, copy=False) - arr).max() < 1e-4 * np.abs(arr).max()
    on = np.abs(np.angle(np.exp(2j * (np.radians(res.phib[refl.centric]) - refl.centric_phase[refl.centric]))))
    assert on.max() < 1e-6  # centric phases keep their restriction
    w = refl.fobs
    before = np.average(np.abs(np.angle(np.exp(1j * (phi - phi_true)))), weights=w)
    after = np.average(np.abs(np.angle(np.exp(1j * (np.radians(res.phib) - phi_true)))), weights=w)
    assert after < before
    assert len(res.trace) == settings.cycles and {"fom", "phase_change", "solvent_fraction",
                                                  "mask_agreement"} <= set(res.trace[0])


def test_histogram_matching_and_schedules_keep_symmetry_and_improve(crystal):
    refl, phi_true, phi, fom = crystal
    hl = hl_from_phase_fom(phi, fom, refl.centric)
    settings = DMSettings(initial_steps=2, shrink_steps=4, final_steps=2)
    settings.protein.histogram_weight = 1.0
    settings.protein.fraction_min_final = 0.3
    settings.solvent.gamma_final = 0.8
    res = run_dm(refl, hl, settings, solvent_fraction=0.55)
    sym = res.map.grid.clone()
    sym.symmetrize_avg()
    arr = res.map.array
    assert np.abs(np.array(sym, copy=False) - arr).max() < 1e-4 * np.abs(arr).max()
    w = refl.fobs
    before = np.average(np.abs(np.angle(np.exp(1j * (phi - phi_true)))), weights=w)
    after = np.average(np.abs(np.angle(np.exp(1j * (np.radians(res.phib) - phi_true)))), weights=w)
    assert after < before
    assert res.trace[0]["truncated"] > res.trace[-2]["truncated"]  # the truncated fraction followed its schedule


def test_unmeasured_reflections_fill_the_maps_and_stay_out_of_the_results(crystal):
    refl, _, phi, fom = crystal
    assert len(refl.completed().hkl) == len(refl.hkl)  # the fixture is complete: nothing to add
    keep = np.random.default_rng(5).random(len(refl.hkl)) >= 0.15
    thin = ReflectionSet(refl.cell, refl.spacegroup, refl.hkl[keep], refl.fobs[keep], refl.sigf[keep])
    full = thin.completed()
    n = len(thin.hkl)
    assert np.array_equal(full.hkl[:n], thin.hkl) and np.all(full.fobs[n:] == 0)
    assert sorted(map(tuple, full.hkl[n:].tolist())) == sorted(map(tuple, refl.hkl[~keep].tolist()))
    hl = hl_from_phase_fom(phi[keep], fom[keep], thin.centric)
    settings = DMSettings(initial_steps=2, shrink_steps=4, final_steps=2, extend_fraction=0.0)
    filled = run_dm(thin, hl, settings, solvent_fraction=0.55)
    settings.fill_unmeasured = False
    plain = run_dm(thin, hl, settings, solvent_fraction=0.55)
    assert filled.reflections is thin and len(filled.phib) == len(filled.fom) == len(filled.fwt) == n
    assert filled.info["unmeasured_filled"] == int((~keep).sum()) and plain.info["unmeasured_filled"] == 0
    assert np.abs(filled.phib - plain.phib).max() > 1.0  # the filled terms changed the maps
    sym = filled.map.grid.clone()
    sym.symmetrize_avg()
    assert np.abs(np.array(sym, copy=False) - filled.map.array).max() < 1e-4 * np.abs(filled.map.array).max()


def test_the_extension_beyond_the_data_enters_only_the_final_maps(crystal):
    refl, _, phi, fom = crystal
    beyond = refl.completed(0.9 * refl.d_min)
    n_ext = len(beyond.hkl) - len(refl.hkl)
    assert n_ext > 0 and beyond.d[len(refl.hkl):].min() >= 0.9 * refl.d_min * (1 - 1e-6)
    assert beyond.d[len(refl.hkl):].max() < refl.d_min
    hl = hl_from_phase_fom(phi, fom, refl.centric)
    runs = {}
    for name, kw in (("off", dict(extend_fraction=0.0)), ("on", {}), ("weight 0", dict(extend_weight=0.0))):
        runs[name] = run_dm(refl, hl, DMSettings(initial_steps=2, shrink_steps=4, final_steps=2, **kw),
                            solvent_fraction=0.55)
    assert runs["on"].info["unmeasured_filled"] == n_ext and runs["off"].info["unmeasured_filled"] == 0
    assert np.array_equal(runs["weight 0"].phib, runs["off"].phib)  # zero weight: exactly no extension
    # before the final steps the extended terms are in no map: the first six cycles agree
    assert [r["fom"] for r in runs["on"].trace[:6]] == pytest.approx([r["fom"] for r in runs["off"].trace[:6]],
                                                                    rel=1e-9)
    assert runs["on"].trace[-1]["fom"] != pytest.approx(runs["off"].trace[-1]["fom"], rel=1e-6)
    assert np.abs(runs["on"].phib - runs["off"].phib).max() > 0.1
    sym = runs["on"].map.grid.clone()
    sym.symmetrize_avg()
    assert np.abs(np.array(sym, copy=False) - runs["on"].map.array).max() < 1e-4 * np.abs(runs["on"].map.array).max()


def test_highest_density_is_truncated_only_at_low_resolution(crystal):
    refl, _, phi, fom = crystal
    low = refl.d >= 2.5  # the same crystal cut to 2.5 Å
    cut = ReflectionSet(refl.cell, refl.spacegroup, refl.hkl[low], refl.fobs[low], refl.sigf[low])
    settings = DMSettings(initial_steps=1, shrink_steps=0, final_steps=1)
    for r, sel, extra in ((refl, np.ones(len(refl.hkl), bool), 0.0), (cut, low, 0.02)):
        res = run_dm(r, hl_from_phase_fom(phi[sel], fom[sel], r.centric), settings, solvent_fraction=0.55)
        assert res.trace[0]["truncated"] == pytest.approx(0.45 + extra, abs=0.005)
    assert settings.protein.fraction_max is None  # the caller's settings are left as they were


def test_a_small_crystal_gets_enough_sigmaa_shells(crystal):
    """σ_A is fitted in equal-count shells of 150 reflections (at most 20): a crystal of a few thousand
    reflections keeps enough shells for σ_A to follow resolution (shells of 500 gave it 2–9)."""
    refl, _, phi, fom = crystal
    settings = DMSettings(initial_steps=1, shrink_steps=0, final_steps=1)
    res = run_dm(refl, hl_from_phase_fom(phi, fom, refl.centric), settings, solvent_fraction=0.55)
    n = len(refl.hkl)
    assert res.info["sigmaa_shells"] == min(20, n // 150)
    assert res.info["sigmaa_shells"] > n // 500
    bins = refl.resolution_bins(settings.weighting.per_bin)
    assert np.bincount(bins).min() >= 150


def test_poor_phases_get_the_shrunk_sigmaa_scale(crystal):
    """The σ_A scale is ``sigmaa_scale_poor`` for experimental phases of mean FOM at or below ``poor_fom[0]``,
    ``sigmaa_scale`` from ``poor_fom[1]`` up, linear between; shrinking σ_A lowers the output's FOMs."""
    refl, _, phi, _ = crystal
    settings = DMSettings(initial_steps=1, shrink_steps=0, final_steps=1)
    w = settings.weighting
    lo, hi = w.poor_fom
    runs = {}
    for m in (lo - 0.05, 0.5 * (lo + hi), hi + 0.05):
        fom = np.full(len(refl.hkl), m)
        runs[m] = run_dm(refl, hl_from_phase_fom(phi, fom, refl.centric), settings, solvent_fraction=0.55)
        assert runs[m].info["start_fom"] == pytest.approx(m, abs=1e-3)
    scales = [r.info["sigmaa_scale"] for r in runs.values()]
    assert scales == pytest.approx([w.sigmaa_scale_poor, 0.5 * (w.sigmaa_scale_poor + w.sigmaa_scale),
                                    w.sigmaa_scale], abs=0.02)
    off = replace(settings, weighting=replace(w, sigmaa_scale_poor=None))
    poor_fom = np.full(len(refl.hkl), lo - 0.05)
    full = run_dm(refl, hl_from_phase_fom(phi, poor_fom, refl.centric), off, solvent_fraction=0.55)
    assert full.info["sigmaa_scale"] == w.sigmaa_scale
    assert runs[lo - 0.05].fom.mean() < full.fom.mean()
    assert settings.weighting.sigmaa_scale == 1.0  # the caller's settings are left as they were


def test_last_cycle_flattens_only_after_a_strong_flip():
    """The final cycle flattens (k = 0) when the flip would have |k| >= flatten_last_min_k, else it flips."""
    rng = np.random.default_rng(0)
    rho = rng.normal(size=(8, 8, 8))
    solvent = np.zeros(rho.shape, bool)
    solvent[:4] = True
    settings = SolventSettings(gamma=1.0, gamma_final=None, flatten_last_min_k=0.9)
    _, k_strong = modify_solvent(rho.copy(), solvent, 0.35, settings, last=True)  # |k| = 0.65/0.35 = 1.86
    out, k_mild = modify_solvent(rho.copy(), solvent, 0.6, settings, last=True)  # |k| = 0.4/0.6 = 0.67
    assert k_strong == 0.0
    assert k_mild == pytest.approx(-0.4 / 0.6)
    assert out[solvent].std() > 0.5 * rho[solvent].std()  # flipped, not flattened
    _, k_always = modify_solvent(rho.copy(), solvent, 0.6, SolventSettings(flatten_last_min_k=0.0), last=True)
    assert k_always == 0.0
    _, k_not_last = modify_solvent(rho.copy(), solvent, 0.35, settings, last=False)
    assert k_not_last == pytest.approx(-0.65 / 0.35)


def test_engine_flips_its_last_cycle_when_the_flip_is_mild(crystal):
    """On the ~55 % solvent test crystal the last flip is mild: with the default threshold the run ends on a
    flip, with a threshold of 0 on a flattened cycle (the old rule)."""
    refl, _, phi, fom = crystal
    hl = hl_from_phase_fom(phi, fom, refl.centric)
    mild = run_dm(refl, hl, DMSettings(initial_steps=2, shrink_steps=2, final_steps=2), solvent_fraction=0.55)
    old = run_dm(refl, hl, DMSettings(initial_steps=2, shrink_steps=2, final_steps=2,
                                      solvent=SolventSettings(flatten_last_min_k=0.0)), solvent_fraction=0.55)
    assert mild.trace[-1]["k_flip"] < 0.0 and old.trace[-1]["k_flip"] == 0.0


def test_mask_provider_is_run_only_while_its_weight_is_above_zero(crystal):
    refl, _, phi, fom = crystal
    hl = hl_from_phase_fom(phi, fom, refl.centric)
    calls = []

    def provider(req):
        calls.append(req.cycle)
        return -np.abs(req.map.array)  # any solvent score on the engine grid

    settings = DMSettings(initial_steps=2, shrink_steps=4, final_steps=2)
    settings.mask.provider_every, settings.mask.provider_weight, settings.mask.provider_weight_final = 2, 0.5, 0.0
    res = run_dm(refl, hl, settings, solvent_fraction=0.55, mask_provider=provider)
    # weight 0.5 in cycles 0-1, then 0.375, 0.25, 0.125, 0 over the shrink cycles 2-5, 0 after
    assert calls == [0, 2, 4]
    assert [r["mask_source"] for r in res.trace] == ["provider"] * 5 + ["lsd"] * 3


def test_an_ensemble_averages_the_phase_probabilities_of_its_runs(crystal):
    refl, _, phi, fom = crystal
    hl = hl_from_phase_fom(phi, fom, refl.centric)
    settings = DMSettings(initial_steps=2, shrink_steps=4, final_steps=2, ensemble_below=0)
    runs = [run_dm(refl, hl, replace(settings, mask=replace(settings.mask, radius_extra=r)), solvent_fraction=0.55)
            for r in (4.0, 2.0)]
    res = run_dm(refl, hl, replace(settings, ensemble=(4.0, 2.0)), solvent_fraction=0.55)
    assert np.allclose(res.hl, hl + (runs[0].hl - hl + runs[1].hl - hl) / 2)
    assert not np.allclose(runs[0].phib, runs[1].phib)  # the runs differ, so the average is not either of them
    phib, _ = phase_fom_from_hl(res.hl, refl.centric, refl.centric_phase)
    assert np.allclose(res.phib, np.degrees(phib))
    assert np.all(res.fom <= np.maximum(runs[0].fom, runs[1].fom) + 1e-12)
    assert np.allclose(res.fwt, (runs[0].fwt + runs[1].fwt) / 2)
    assert np.allclose(res.map.array, (runs[0].map.array + runs[1].map.array) / 2, atol=1e-5)
    assert [m["radius_extra"] for m in res.info["members"]] == [4.0, 2.0]
    assert [r["fom"] for r in res.trace] == [r["fom"] for r in runs[0].trace]  # the first run's trace


def test_small_data_are_run_as_an_ensemble_unless_told_otherwise(crystal):
    refl, _, phi, fom = crystal
    hl = hl_from_phase_fom(phi, fom, refl.centric)
    settings = DMSettings(initial_steps=2, shrink_steps=4, final_steps=2)
    grid = engine_grid(refl, settings)
    n = int(np.prod(grid))
    assert n < 100_000
    assert ensemble_radii(settings, grid) == ENSEMBLE_RADII  # the fixture's small cell
    assert ensemble_radii(replace(settings, ensemble_below=n), grid) == ()  # the limit is "fewer than"
    assert ensemble_radii(replace(settings, ensemble_below=0, ensemble=(4.0, 2.0)), grid) == (4.0, 2.0)
    auto = run_dm(refl, hl, settings, solvent_fraction=0.55)
    given = run_dm(refl, hl, replace(settings, ensemble=ENSEMBLE_RADII, ensemble_below=0), solvent_fraction=0.55)
    one = run_dm(refl, hl, replace(settings, ensemble_below=n), solvent_fraction=0.55)
    assert [m["radius_extra"] for m in auto.info["members"]] == list(ENSEMBLE_RADII)
    assert np.array_equal(auto.hl, given.hl)
    assert "members" not in one.info and not np.allclose(one.hl, auto.hl)


def test_an_ensemble_runs_the_mask_provider_once_per_cycle(crystal):
    refl, _, phi, fom = crystal
    calls = []

    def provider(req):
        calls.append(req.cycle)
        return -np.abs(req.map.array)

    settings = DMSettings(initial_steps=2, shrink_steps=4, final_steps=2, ensemble=(4.0, 3.0, 5.0))
    settings.mask.provider_every = 2
    run_dm(refl, hl_from_phase_fom(phi, fom, refl.centric), settings, solvent_fraction=0.55, mask_provider=provider)
    assert calls == [0, 2, 4]  # as for one run: the later runs take the first one's scores


def test_the_mask_provider_may_ask_for_a_grid_that_holds_only_the_data(crystal):
    refl, _, phi, fom = crystal
    coarse = refl.grid_shape(2.05)  # holds reflections to d_min, not the extension to 0.9 d_min

    def provider(req):  # like the U-net, which reads the map on its own grid
        return resample(-np.abs(req.map_on(coarse).array), req.map.array.shape)

    settings = DMSettings(initial_steps=2, shrink_steps=4, final_steps=2)
    settings.mask.provider_weight, settings.mask.provider_weight_final = 0.5, 0.5
    res = run_dm(refl, hl_from_phase_fom(phi, fom, refl.centric), settings, solvent_fraction=0.55,
                 mask_provider=provider)
    assert res.info["unmeasured_filled"] > 0 and all(r["mask_source"] == "provider" for r in res.trace)


def _write_mtz(path: Path, refl, phi, fom, with_phases: bool = True) -> None:
    cols = {"FP": ("F", refl.fobs), "SIGFP": ("Q", refl.sigf)}
    if with_phases:
        cols.update({"PHIB": ("P", np.degrees(phi)), "FOM": ("W", fom)})
    make_mtz(refl.cell, refl.spacegroup, refl.hkl, cols).write_to_file(str(path))


def test_command_writes_outputs(crystal, tmp_path, capsys):
    refl, _, phi, fom = crystal
    _write_mtz(tmp_path / "in.mtz", refl, phi, fom)
    code = main(["density-modify", "--reflections", str(tmp_path / "in.mtz"), "--solvent-fraction", "0.55",
                 "--mask", "local-variance", "--cycles", "4", "--out", str(tmp_path / "out")])
    assert code == 0, capsys.readouterr().err
    mtz = gemmi.read_mtz_file(str(tmp_path / "out" / "density_modified.mtz"))
    assert {"FWT", "PHWT", "PHIB", "FOM", "HLA", "HLB", "HLC", "HLD"} <= {c.label for c in mtz.columns}
    assert mtz.spacegroup.hm == "P 21 21 21" and mtz.cell.approx(refl.cell, 1e-3)
    assert (tmp_path / "out" / "density_modified.ccp4").exists()
    assert len((tmp_path / "out" / "cycles.tsv").read_text().splitlines()) == 5


def test_command_runs_an_ensemble(crystal, tmp_path, capsys):
    refl, _, phi, fom = crystal
    _write_mtz(tmp_path / "in.mtz", refl, phi, fom)
    code = main(["density-modify", "--reflections", str(tmp_path / "in.mtz"), "--solvent-fraction", "0.55",
                 "--mask", "local-variance", "--cycles", "4", "--ensemble", "--out", str(tmp_path / "out")])
    assert code == 0, capsys.readouterr().err
    assert "averaged 3 runs" in capsys.readouterr().out
    assert (tmp_path / "out" / "density_modified.mtz").exists()


def test_command_ensemble_choices(crystal, tmp_path, capsys):
    refl, _, phi, fom = crystal
    _write_mtz(tmp_path / "in.mtz", refl, phi, fom)
    for choice, averaged in (("auto", True), ("never", False), ("always", True)):
        code = main(["density-modify", "--reflections", str(tmp_path / "in.mtz"), "--solvent-fraction", "0.55",
                     "--mask", "local-variance", "--cycles", "4", "--ensemble", choice, "--out",
                     str(tmp_path / choice)])
        assert code == 0
        assert ("averaged 3 runs" in capsys.readouterr().out) == averaged
    with pytest.raises(SystemExit):
        main(["density-modify", "--reflections", str(tmp_path / "in.mtz"), "--ensemble", "sometimes",
              "--out", str(tmp_path / "bad")])
    assert "invalid choice: 'sometimes'" in capsys.readouterr().err


def test_command_says_when_poor_phases_shrink_sigmaa(crystal, tmp_path, capsys):
    refl, _, phi, fom = crystal
    for m, said in ((0.15, True), (0.6, False)):
        _write_mtz(tmp_path / f"in{m}.mtz", refl, phi, np.full(len(refl.hkl), m))
        code = main(["density-modify", "--reflections", str(tmp_path / f"in{m}.mtz"), "--solvent-fraction", "0.55",
                     "--mask", "local-variance", "--cycles", "4", "--out", str(tmp_path / f"out{m}")])
        out = capsys.readouterr().out
        assert code == 0
        assert ("starting phases are poor (mean FOM 0.15): the modified map's σA is scaled by 0.40" in out) == said


def test_command_refuses_missing_phases(crystal, tmp_path, capsys):
    refl, _, phi, fom = crystal
    _write_mtz(tmp_path / "nophase.mtz", refl, phi, fom, with_phases=False)
    code = main(["density-modify", "--reflections", str(tmp_path / "nophase.mtz"), "--solvent-fraction", "0.5",
                 "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert code != 0 and err.count("\n") == 0 and "no experimental phase column" in err
    assert not (tmp_path / "o" / "density_modified.mtz").exists()


def test_command_refuses_mask_map_with_another_or_no_cell(crystal, tmp_path, capsys):
    refl, _, phi, fom = crystal
    _write_mtz(tmp_path / "in.mtz", refl, phi, fom)
    grid = gemmi.FloatGrid(8, 8, 8)
    grid.set_unit_cell(gemmi.UnitCell(1, 1, 1, 90, 90, 90))
    ccp4 = gemmi.Ccp4Map()
    ccp4.grid = grid
    ccp4.update_ccp4_header()
    ccp4.write_ccp4_map(str(tmp_path / "mask.ccp4"))
    code = main(["density-modify", "--reflections", str(tmp_path / "in.mtz"), "--solvent-fraction", "0.5",
                 "--mask", str(tmp_path / "mask.ccp4"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert code != 0 and err.count("\n") == 0 and "cell" in err


# ------------------------------------------------------------------------------ the cctbx-dm refiner

def test_registered_as_a_refiner():
    assert "cctbx-dm" in Host().refiners


def test_missing_cctbx_is_one_sentence(monkeypatch, crystal):
    refl, _, phi, fom = crystal
    monkeypatch.setenv(cctbx_dm.ENV_EXECUTABLE, "/nonexistent/mmtbx.density_modification")
    with pytest.raises(CrysError) as exc:
        cctbx_dm.CctbxDMRefiner().refine(None, (refl.cell, refl.hkl, refl.fobs), solvent_fraction=0.5,
                                         phases=np.degrees(phi), fom=fom)
    assert "not installed" in str(exc.value) and str(exc.value).count(".") <= 2


@pytest.mark.skipif(cctbx_dm.cctbx_dm_executable() is None, reason="cctbx-base is not installed")
def test_runs_cctbx_and_reads_phases(crystal):
    refl, phi_true, phi, fom = crystal
    hl = hl_from_phase_fom(phi, fom, refl.centric)
    out = cctbx_dm.run_cctbx_dm(refl.cell, refl.spacegroup, refl.hkl, refl.fobs, refl.sigf, hl, 0.55, timeout=600)
    f_true = refl.values_at(np.abs(refl.fobs) * np.exp(1j * phi_true), out.hkl)
    ok = np.isfinite(f_true)
    assert ok.mean() > 0.95 and np.all((out.fom >= 0) & (out.fom <= 1))
    err = np.abs(np.angle(np.exp(1j * (np.radians(out.phib[ok]) - np.angle(f_true[ok])))))
    start = np.abs(np.angle(np.exp(1j * (phi - phi_true))))
    assert np.degrees(err.mean()) < np.degrees(start.mean()) + 10  # a sane phase set, read in the right ASU


def test_command_with_a_sequence_uses_the_combined_solvent_estimate(crystal, tmp_path, capsys):
    refl, _, phi, fom = crystal
    _write_mtz(tmp_path / "in.mtz", refl, phi, fom)
    seq = gemmi.one_letter_code([r.name for r in gemmi.read_structure(str(DATA / "frag5.pdb"))[0][0]])
    code = main(["density-modify", "--reflections", str(tmp_path / "in.mtz"), "--sequence", seq,
                 "--mask", "local-variance", "--cycles", "3", "--out", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert code == 0
    line = next(x for x in out.splitlines() if x.startswith("solvent fraction"))
    value = float(line.split()[2].rstrip(":"))
    matthews = float(re.search(r"Matthews (\d\.\d+)", line).group(1))
    unet = float(re.search(r"U-net's (\d\.\d+)", line).group(1))
    assert "eq. 2" in line and min(matthews, unet) - 1e-3 <= value <= max(matthews, unet) + 1e-3


def test_omit_statistic_predicts_each_reflection_from_a_map_without_it(crystal):
    from dataclasses import replace

    from crysplugins.crystal.dm.selection import omit_agreement, omit_predictions
    refl, _, phi, fom = crystal
    st = DMSettings(initial_steps=2, shrink_steps=3, final_steps=1)
    res = run_dm(refl, hl_from_phase_fom(phi, fom, refl.centric), st, solvent_fraction=0.55)
    base = omit_predictions(res, folds=5, seed=1)
    changed = res.fwt.copy()
    changed[7] *= 50.0  # a reflection's own coefficient must not reach its own prediction ...
    moved = omit_predictions(replace(res, fwt=changed), folds=5, seed=1)
    assert moved[7] == pytest.approx(base[7])
    assert not np.allclose(moved, base)  # ... but it does reach the others' (it is in their maps)
    cc = omit_agreement(res, folds=5)
    assert 0.0 < cc < 1.0
    # scrambled phases predict the omitted amplitudes worse than the density-modified ones
    rng = np.random.default_rng(0)
    scrambled = replace(res, fwt=np.abs(res.fwt) * np.exp(2j * np.pi * rng.random(len(res.fwt))),
                        phib=360.0 * rng.random(len(res.phib)))
    assert omit_agreement(scrambled, folds=5) < cc
    cc_phases = omit_agreement(res, folds=5, source="phases")  # m|F_obs| at the best phases only
    assert 0.0 < cc_phases < 1.0 and cc_phases != cc
    assert omit_agreement(scrambled, folds=5, source="phases") < cc_phases


def test_test_set_never_enters_a_map_and_is_traced(crystal):
    refl, _, phi, fom = crystal
    hl = hl_from_phase_fom(phi, fom, refl.centric)
    st = DMSettings(initial_steps=2, shrink_steps=3, final_steps=1, test_fraction=0.1)
    a = run_dm(refl, hl, st, solvent_fraction=0.55)
    from crysplugins.crystal.dm.engine import _test_set
    test = _test_set(refl, 0.0, 0.1, st.seed)
    other = ReflectionSet(refl.cell, refl.spacegroup, refl.hkl, np.where(test, refl.fobs * 3.0, refl.fobs), refl.sigf)
    b = run_dm(other, hl, st, solvent_fraction=0.55)
    assert np.allclose(a.phib[~test], b.phib[~test])  # the test amplitudes changed nothing outside the test set
    assert a.trace[-1]["test_cc"] != b.trace[-1]["test_cc"]  # ... only the statistic that judges them
    assert a.info["test_reflections"] == int(test.sum()) > 10 and np.isfinite(a.info["test_cc"])


def test_selection_keeps_the_run_with_the_better_statistic(crystal):
    from crysplugins.crystal.dm import selection
    refl, _, phi, fom = crystal
    hl = hl_from_phase_fom(phi, fom, refl.centric)
    assert selection.choose([0.5, 0.7]) == 1 and selection.choose([0.7, 0.5]) == 0
    assert selection.choose([0.5, 0.5]) == 0 and selection.choose([float("nan"), float("nan")]) == 0
    assert selection.choose([float("nan"), 0.1]) == 1
    st = DMSettings(initial_steps=2, shrink_steps=3, final_steps=1)
    chosen, results = selection.run_selected(refl, hl, st, ("default", "conservative"), solvent_fraction=0.55)
    stats = [r.info["omit_cc"] for r in results]
    assert chosen is results[int(np.argmax(stats))]
    assert chosen.info["selection"]["omit_cc"] == {"default": stats[0], "conservative": stats[1]}
    # the conservative candidate really is another run
    assert not np.allclose(results[0].phib, results[1].phib)
    with pytest.raises(CrysError, match="Unknown density-modification variant"):
        selection.run_selected(refl, hl, st, ("default", "wild"), solvent_fraction=0.55)


def test_command_reports_the_chosen_variant(crystal, tmp_path, capsys):
    refl, _, phi, fom = crystal
    _write_mtz(tmp_path / "in.mtz", refl, phi, fom)
    args = ["density-modify", "--reflections", str(tmp_path / "in.mtz"), "--solvent-fraction", "0.55",
            "--mask", "local-variance", "--cycles", "4"]
    assert main(args + ["--select", "default,conservative", "--out", str(tmp_path / "out")]) == 0
    text = capsys.readouterr().out
    got = re.search(r"chose the (\w+) run: omit-map amplitude correlation default ([\d.]+), conservative ([\d.]+)",
                    text)
    assert got, text
    rows = (tmp_path / "out" / "cycles.tsv").read_text().splitlines()
    header, last = rows[0].split("\t"), rows[-1].split("\t")
    assert last[header.index("variant")] == got.group(1)
    assert main(args + ["--select", "default,bold", "--out", str(tmp_path / "o2")]) != 0
    assert "Unknown density-modification variant 'bold'" in capsys.readouterr().err


def test_the_output_averages_the_last_cycles_without_changing_them(crystal):
    refl, _, phi, fom = crystal
    hl = hl_from_phase_fom(phi, fom, refl.centric)
    runs = {k: run_dm(refl, hl, DMSettings(initial_steps=2, shrink_steps=4, final_steps=2, output_average=k),
                      solvent_fraction=0.55) for k in (0.0, 0.125, 0.5)}
    assert np.array_equal(runs[0.125].phib, runs[0.0].phib)  # one cycle of 8: the last cycle's phases
    half = runs[0.5]  # the last 4 of 8 cycles
    assert [r["fom"] for r in half.trace] == [r["fom"] for r in runs[0.0].trace]  # the cycles are unchanged
    assert np.abs(half.phib - runs[0.0].phib).max() > 0.1
    phib, fom_out = phase_fom_from_hl(half.hl, refl.centric, refl.centric_phase)
    assert np.degrees(phib) == pytest.approx(half.phib, abs=1e-6) and fom_out == pytest.approx(half.fom)
    sym = half.map.grid.clone()
    sym.symmetrize_avg()
    assert np.abs(np.array(sym, copy=False) - half.map.array).max() < 1e-4 * np.abs(half.map.array).max()


def test_sigmaa_is_recovered_from_amplitudes_drawn_with_it():
    """|E_obs|, |E_mod| drawn from the Rice (acentric) and Gaussian (centric) model with a known σ_A per shell."""
    from crysplugins.crystal.dm.weighting import sigmaa_ml

    rng = np.random.default_rng(5)
    truth = np.array([0.9, 0.6, 0.3])
    bins = np.repeat(np.arange(3), 4000)
    centric = rng.random(len(bins)) < 0.2
    s = truth[bins]

    def draw(real: bool) -> np.ndarray:
        return rng.normal(size=len(bins)) + (0 if real else 1j * rng.normal(size=len(bins)))

    scale = np.where(centric, 1.0, np.sqrt(0.5))  # unit <|E|^2> for both kinds
    ec = draw(False) * scale
    ec = np.where(centric, ec.real, ec)
    noise = draw(False) * scale
    noise = np.where(centric, noise.real, noise)
    eo = s * ec + np.sqrt(1 - s * s) * noise
    est = sigmaa_ml(np.abs(eo), np.abs(ec), centric, bins)
    assert np.allclose(est, truth, atol=0.03)
