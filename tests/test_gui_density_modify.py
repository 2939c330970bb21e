"""The window's Tools > Density-modify action: ``crysplugins density-modify`` on an opened MTZ (a child
process), the modified map shown and the MTZ added to the Data list.  Runs with QT_QPA_PLATFORM=offscreen."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("PyQt6")
pytest.importorskip("pytestqt")

import gemmi  # noqa: E402
from PyQt6.QtCore import QSettings  # noqa: E402
from PyQt6.QtWidgets import QMenu  # noqa: E402

from crysplugins.host import Host  # noqa: E402
from crysplugins_test_support import write_phasing_mtz  # noqa: E402

DATA = Path(__file__).parent / "data"


def phasing_mtz(path: Path) -> None:
    write_phasing_mtz(path)


@pytest.fixture
def window(qtbot, tmp_path):
    from crysplugins.gui.main_window import MainWindow

    w = MainWindow(host=Host(autoload=False, only=["solvent_content"]),
                   settings=QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(w)
    w.show()
    yield w
    if w.dm_run is not None:
        w.dm_run.stop()
    w.panel.shutdown()


def test_density_modify_shows_the_map_and_adds_the_mtz(qtbot, window, tmp_path):
    phasing_mtz(tmp_path / "phased.mtz")
    window.open_path(str(tmp_path / "phased.mtz"), ask_columns=False)
    doc = window._reflections_for_dm()
    assert doc is not None and doc.path == str(tmp_path / "phased.mtz")
    actions = [a.text() for m in window.menuBar().findChildren(QMenu) for a in m.actions()]
    assert "Density-modify reflections…" in actions
    run = window.density_modify(doc, 0.55, extra=["--cycles", "3", "--mask", "local-variance"])
    qtbot.waitUntil(lambda: any(d.name == "density_modified.mtz" for d in window.documents)
                    or window.last_error is not None, timeout=120000)
    assert window.last_error is None
    mtz_doc = next(d for d in window.documents if d.name == "density_modified.mtz")
    mtz = gemmi.read_mtz_file(mtz_doc.path)
    assert {"FWT", "PHWT", "PHIB", "FOM", "HLA"} <= {c.label for c in mtz.columns}
    assert mtz.spacegroup.hm == "P 21 21 21" and Path(mtz_doc.path).parent == Path(run.out_dir)
    shown = window.map_view.current
    assert shown is not None and shown.name == "density-modified"
    assert shown.spacegroup.hm == "P 21 21 21" and np.isfinite(np.asarray(shown.grid)).all()
    assert any(m.startswith("solvent fraction 0.550") for m in window.dm_messages)


def test_density_modify_without_reflections_or_phases_is_one_sentence(qtbot, window, tmp_path):
    assert window.density_modify(None, 0.5) is None
    assert window.last_error.startswith("Open an MTZ file")
    mtz = gemmi.read_mtz_file(str(DATA / "coot_data.mtz"))  # FP/SIGFP and map coefficients, no PHIB/FOM or HL
    mtz.write_to_file(str(tmp_path / "nophase.mtz"))
    window.open_path(str(tmp_path / "nophase.mtz"), ask_columns=False)
    window.last_error = None
    window.density_modify(window._reflections_for_dm(), 0.5)
    qtbot.waitUntil(lambda: window.last_error is not None, timeout=60000)
    assert "Traceback" not in window.last_error and window.last_error.count("\n") == 0
