"""The SHELXE refiner adapter, run against a fake ``shelxe`` executable that checks its input files."""
from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import gemmi
import numpy as np
import pytest

from crysplugins.crystal import io, metrics
from crysplugins.crystal.fourier import fourier_grid
from crysplugins.errors import CrysError
from crysplugins.host import Host
from crysplugins.interface import CrystalMap, Reflections
from crysplugins.plugins import refiners

DATA = Path(__file__).parent / "data"
import crysplugins_classical_fixtures as fx  # registered by conftest.py

# A fake SHELXE: validates argv and the .hkl/.ins/.phi it is given (fixed SHELX formats), then writes a
# .phs with the starting phases shifted by +10° and a log line like SHELXE's autotracing summary.
FAKE = r'''#!{python}
import re, sys
from pathlib import Path
args = sys.argv[1:]
assert args[0] == "xx.phi", args
opts = {{a[:2]: a[2:] for a in args[1:]}}
solvent = float(opts["-s"]); cycles = int(opts["-m"]); trace = int(opts["-a"])
assert 0 < solvent < 1 and cycles > 0 and trace >= 0
hkl = Path("xx.hkl").read_text().splitlines()
assert hkl[-1] == "   0   0   0    0.00    0.00", hkl[-1]
n = 0
for line in hkl[:-1]:
    assert len(line) == 28, repr(line)
    h, k, l = int(line[0:4]), int(line[4:8]), int(line[8:12])
    i, s = float(line[12:20]), float(line[20:28])
    assert (h, k, l) != (0, 0, 0) and i >= 0 and s > 0
    n += 1
ins = Path("xx.ins").read_text().splitlines()
cards = [x.split()[0] for x in ins]
assert cards == ["TITL", "CELL", "ZERR", "LATT", "SFAC", "UNIT", "END"], cards
cell = [float(x) for x in ins[1].split()[1:]]
assert len(cell) == 7 and cell[0] == 1.0
assert ins[3].split()[1] == "-1"
assert len(ins[5].split()) == len(ins[4].split())
out = []
m = 0
for line in Path("xx.phi").read_text().splitlines():
    assert len(line) == 37, repr(line)
    h, k, l = int(line[0:4]), int(line[4:8]), int(line[8:12])
    f, fom, phi = float(line[12:21]), float(line[21:29]), float(line[29:37])
    assert 0 <= fom <= 1 and 0 <= phi < 360
    out.append("%4d%4d%4d%9.2f%8.4f%8.1f%9.2f" % (h, k, l, f, 0.8, (phi + 10.0) % 360, 1.0))
    m += 1
assert m == n, (m, n)
Path("xx.phs").write_text("\n".join(out) + "\n")
Path("args.txt").write_text(" ".join(args) + "\n" + "%.4f %.3f %.3f %.3f" % tuple(cell[:4]))
print(" CC for partial structure against native data =  18.20 %")
print(" CC for partial structure against native data =  31.25 %")
'''


@pytest.fixture
def fake_shelxe(tmp_path):
    path = tmp_path / "bin" / "shelxe"
    path.parent.mkdir()
    path.write_text(FAKE.format(python=sys.executable))
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


@pytest.fixture(scope="module")
def frag2():
    st, hkl, f = fx.structure_factors(DATA / "frag2.pdb", 1.5)
    seq = gemmi.one_letter_code([r.name for r in st[0][0]])
    return st, hkl, np.abs(f), np.angle(f, deg=True), seq


def test_adapter_writes_valid_input_and_reads_phases(fake_shelxe, frag2, tmp_path):
    st, hkl, f, phi, seq = frag2
    fg = fourier_grid(st.cell, hkl, d_min=1.5)
    start = CrystalMap.from_array(fg.to_map(f * np.exp(1j * np.deg2rad(phi))), st.cell, "P 1")
    refl = Reflections(mtz=io.make_mtz(st.cell, gemmi.SpaceGroup("P 1"), hkl, {"F": ("F", f)}), columns={"F": "F"})
    work = tmp_path / "work"
    res = refiners.ShelxeRefiner(str(fake_shelxe)).refine(start, refl, sequence=seq, cycles=15, trace_cycles=2,
                                                         keep_dir=work)
    args, cell_line = (work / "args.txt").read_text().splitlines()
    assert args.split()[0] == "xx.phi" and "-m15" in args and "-a2" in args and args.split()[1].startswith("-s0.")
    assert [float(x) for x in cell_line.split()] == pytest.approx([1.0, st.cell.a, st.cell.b, st.cell.c], abs=1e-3)
    # phases came back (fake adds 10°): the adapter read the .phs and matched reflections by hkl
    assert res.info["reflections_returned"] == len(hkl)
    assert metrics.phase_error(hkl, phi, res.phases, None) == pytest.approx(10.0, abs=0.2)
    assert res.score == pytest.approx(0.3125) and res.refined  # best traced CC, >= 0.20
    assert res.map.cell.approx(st.cell, 1e-3)


def test_adapter_reports_failure(tmp_path, frag2):
    st, hkl, f, phi, seq = frag2
    bad = tmp_path / "shelxe"
    bad.write_text("#!/bin/sh\necho '** Cannot open file xx.hkl **'\nexit 1\n")
    bad.chmod(0o755)
    refl = Reflections(mtz=io.make_mtz(st.cell, gemmi.SpaceGroup("P 1"), hkl, {"F": ("F", f)}), columns={"F": "F"})
    with pytest.raises(CrysError, match="SHELXE failed: .*Cannot open"):
        refiners.ShelxeRefiner(str(bad)).refine(None, refl, phases=phi, solvent_fraction=0.8)


def test_registered_only_when_installed(fake_shelxe, monkeypatch):
    monkeypatch.delenv(refiners.ENV_SHELXE, raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    assert "shelxe" not in Host(autoload=False).refiners
    monkeypatch.setenv("PATH", str(fake_shelxe.parent) + os.pathsep + "/nonexistent")
    host = Host(autoload=False)
    assert "shelxe" in host.refiners and "density-modification" in host.refiners
