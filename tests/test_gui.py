"""pytest-qt tests of the desktop app and the predictor panel (run under QT_QPA_PLATFORM=offscreen).

Fixtures: tests/data/gui_tiny.{ccp4,mtz,fasta} (made by tests/data/make_gui_fixtures.py).  Predictors: the
real built-in ``solvent-content``; a real small "model" predictor registered through
``Host(extra_plugins=...)`` that smooths a map in steps (reporting progress, honouring cancellation); a
predictor that fails with a CrysError; a plugin whose hook raises.  No test sleeps on a fixed timer: all
waits are ``qtbot.waitSignal`` / ``waitUntil``.
"""
from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
pytest.importorskip("PyQt6")
pytest.importorskip("pytestqt")

import gemmi  # noqa: E402
from PyQt6.QtCore import QMimeData, QPointF, QSettings, Qt, QTimer, QUrl  # noqa: E402
from PyQt6.QtGui import QDropEvent, QImage  # noqa: E402
from PyQt6.QtWidgets import QMessageBox  # noqa: E402

from crysplugins.crystal import io  # noqa: E402
from crysplugins.errors import CrysError  # noqa: E402
from crysplugins.hookspecs import hookimpl  # noqa: E402
from crysplugins.host import Host  # noqa: E402
from crysplugins.interface import (CrystalMap, InputSpec, Kind, OutputSpec, Prediction, Request,  # noqa: E402
                                   Scalar, Sequence)

DATA = os.path.join(os.path.dirname(__file__), "data")
TINY_MAP = os.path.join(DATA, "gui_tiny.ccp4")
TINY_MTZ = os.path.join(DATA, "gui_tiny.mtz")
TINY_FASTA = os.path.join(DATA, "gui_tiny.fasta")


# ------------------------------------------------------------------------------- test predictors

def smooth_once(arr: np.ndarray) -> np.ndarray:
    """Mean of each voxel and its six periodic neighbours."""
    out = arr.copy()
    for ax in range(3):
        out += np.roll(arr, 1, axis=ax)
        out += np.roll(arr, -1, axis=ax)
    return out / 7.0


class SmoothPredictor:
    """A small real predictor: smooths a map in steps, reporting progress after each step."""

    name = "gui-test-smooth"
    version = "0.1"
    summary = "Test predictor: smooths a map by averaging each voxel with its six neighbours, in steps."
    inputs = (InputSpec("map", Kind.MAP, "map to smooth", required=True),
              InputSpec("steps", Kind.INT, "number of smoothing steps", default=3, minimum=1))
    outputs = (OutputSpec("smoothed", Kind.MAP, "the smoothed map"),
               OutputSpec("steps", Kind.SCALAR, "steps done"))

    def __init__(self) -> None:
        self.steps_done = 0
        self.gate: threading.Event | None = None  # if set: the half-way step waits for the GUI thread to open it

    def predict(self, request: Request) -> Prediction:
        cmap = request.require("map")
        steps = int(request.get("steps", 3))
        arr = cmap.array.astype(np.float32, copy=True)
        self.steps_done = 0
        for i in range(steps):
            if self.gate is not None and i == steps // 2 and not self.gate.wait(timeout=60):
                raise CrysError("the GUI event loop did not run while the predictor was running")
            arr = smooth_once(arr)
            self.steps_done = i + 1
            request.report((i + 1) / steps, f"step {i + 1} of {steps}")
        return Prediction(maps={"smoothed": CrystalMap.from_array(arr, cmap.cell, cmap.spacegroup, "smoothed")},
                          scalars={"steps": Scalar(float(steps))})


class FailingPredictor:
    name = "gui-test-fail"
    version = "0.1"
    summary = "Test predictor that refuses its input with a CrysError."
    inputs = (InputSpec("map", Kind.MAP, "any map", required=True),)
    outputs = (OutputSpec("nothing", Kind.SCALAR, "never returned"),)

    def predict(self, request: Request) -> Prediction:
        request.report(0.1, "checking")
        raise CrysError("The map grid 10x12x14 is too small for this model; it needs at least 32 points per axis.")


class ThresholdMaskPredictor:
    """Takes a map *or* reflections (an input group) and returns a binary mask: 1 where the map is below its mean."""

    name = "gui-test-mask"
    version = "0.1"
    summary = "Test predictor: solvent-like mask of the low half of a map."
    inputs = (InputSpec("map", Kind.MAP, "a map", group="data"),
              InputSpec("reflections", Kind.REFLECTIONS, "F and PHI", columns=("F", "PHI"), group="data"))
    outputs = (OutputSpec("level", Kind.MAP, "the map, copied"), OutputSpec("mask", Kind.MASK, "1 below the mean"))

    def predict(self, request: Request) -> Prediction:
        cmap = request.get("map")
        if cmap is None or request.get("reflections") is not None:
            raise CrysError("Give the map only.")
        mask = (cmap.array < cmap.array.mean()).astype(np.float32)
        return Prediction(maps={"level": CrystalMap.from_array(cmap.array, cmap.cell, cmap.spacegroup, "level"),
                                "mask": CrystalMap.from_array(mask, cmap.cell, cmap.spacegroup, "mask")})


class _Plugin:
    def __init__(self, *predictors) -> None:
        self.predictors = predictors

    @hookimpl
    def register_predictors(self, register) -> None:  # noqa: ANN001
        for p in self.predictors:
            register(p)


class _BrokenPlugin:
    @hookimpl
    def register_predictors(self, register) -> None:  # noqa: ANN001
        raise RuntimeError("this third-party plugin is broken on purpose")


# --------------------------------------------------------------------------------------- fixtures

@pytest.fixture
def smoother() -> SmoothPredictor:
    return SmoothPredictor()


@pytest.fixture
def host(smoother) -> Host:
    return Host(autoload=False, only=["solvent_content", "charge_flipping"],
                extra_plugins=[("gui_test_plugin", _Plugin(smoother, FailingPredictor(), ThresholdMaskPredictor())),
                               ("gui_broken_plugin", _BrokenPlugin())])


@pytest.fixture
def window(qtbot, host, tmp_path):
    from crysplugins.gui.main_window import MainWindow

    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    w = MainWindow(host=host, settings=settings)
    qtbot.addWidget(w)
    w.resize(1200, 800)
    w.show()
    yield w
    w.panel.shutdown()


def _run(qtbot, panel, timeout=20000):
    """Run the selected predictor through the panel; (name, Prediction) from predictionFinished."""
    got = []
    panel.predictionFinished.connect(lambda name, prediction: got.append((name, prediction)))
    panel.last_error = None
    with qtbot.waitSignal(panel.runDone, timeout=timeout):
        assert panel.run() is not None
    assert panel.last_error is None, panel.last_error
    assert len(got) == 1
    return got[0]


def _pixels(canvas) -> np.ndarray:
    img = canvas.image.convertToFormat(QImage.Format.Format_RGBA8888)
    ptr = img.constBits()
    ptr.setsize(img.sizeInBytes())
    return np.frombuffer(ptr, dtype=np.uint8).copy()


def _sampled_cc(ref: CrystalMap, other: CrystalMap) -> float:
    """Correlation of ``ref`` with ``other`` interpolated at ref's grid points (same cell)."""
    nu, nv, nw = ref.shape
    values = [other.grid.interpolate_value(ref.cell.orthogonalize(gemmi.Fractional(i / nu, j / nv, k / nw)))
              for i in range(nu) for j in range(nv) for k in range(nw)]
    return float(np.corrcoef(ref.array.ravel(), np.array(values))[0, 1])


# ------------------------------------------------------------------------------------------ tests

def test_open_map_and_move_slider(window, qtbot):
    view = window.map_view
    doc = window.open_path(TINY_MAP)
    assert doc is not None and doc.kind == "map"
    assert view.current is doc.obj and view.current.shape == (10, 12, 14)
    assert "grid 10×12×14" in view.info_label.text() and "P 1" in view.info_label.text()
    assert window.recent_files()[0] == os.path.realpath(TINY_MAP)
    before = _pixels(view.canvases[2])
    start = view.slice_index(2)
    with qtbot.waitSignal(view.sliceChanged, timeout=2000) as blocker:
        view.sliders[2].setValue((start + 4) % 14)
    assert blocker.args == [2, (start + 4) % 14]
    assert view.slider_labels[2].text() == f"c {(start + 4) % 14}/14"
    assert f"c = {((start + 4) % 14) / 14:.3f}" in view.canvases[2].title
    assert not np.array_equal(before, _pixels(view.canvases[2]))  # the slice really changed
    # the level in sigma changes the drawing too
    before = _pixels(view.canvases[0])
    view.level_spin.setValue(2.5)
    assert not np.array_equal(before, _pixels(view.canvases[0]))


def test_mtz_opens_with_column_dialog_and_becomes_a_map(window, qtbot):
    doc = window.open_path(TINY_MTZ)
    assert doc is not None and doc.kind == "reflections"
    dialog = window.last_column_dialog
    assert dialog is not None and dialog.isVisible()
    assert dialog.columns() == {"F": "F", "PHI": "PHI"}  # defaults from crystal.io's automatic picks
    dialog.accept()
    cmap = window.map_view.current
    assert cmap is not None and cmap.name.startswith("gui_tiny F")
    tiny = io.read_map(TINY_MAP)
    assert cmap.cell.approx(tiny.cell, 1e-3)
    # the FFT map agrees with the map the coefficients came from (3.2 Å coefficients of it)
    assert _sampled_cc(tiny, cmap) > 0.9
    assert "different grid" in window.map_view.cc_label.text() or window.map_view.second is None


def test_solvent_content_through_the_panel(window, qtbot):
    if "solvent-content" not in window.host.predictors:
        pytest.skip("the built-in solvent-content predictor is not installed")
    window.open_path(TINY_MAP)
    window.open_path(TINY_FASTA)
    panel = window.panel
    panel.select("solvent-content")
    assert panel.field("cell").line.text() == "15 18 21 90 100 90"  # pre-filled from the open map
    assert panel.field("spacegroup").line.text() == "P 1"
    assert isinstance(panel.field("sequence").value().value, Sequence)
    panel.set_value("resolution", "2.0")
    name, prediction = _run(qtbot, panel)
    assert name == "solvent-content"
    seq = io.read_sequence(TINY_FASTA)
    expected = window.host.get("solvent-content").predict(Request(inputs={
        "cell": gemmi.UnitCell(15, 18, 21, 90, 100, 90), "spacegroup": gemmi.SpaceGroup("P 1"),
        "sequence": seq, "resolution": 2.0}))
    assert prediction.scalars["solvent_fraction"].value == pytest.approx(expected.scalars["solvent_fraction"].value)
    assert prediction.tables["copies"].rows == expected.tables["copies"].rows
    top = window.results_tree.topLevelItem(0)
    assert top.text(0).startswith("solvent-content")
    texts = [top.child(i).text(0) for i in range(top.childCount())]
    assert "solvent_fraction" in texts and "copies" in texts
    assert "done in" in panel.status.text()


def test_model_predictor_result_is_overlaid_with_correlation(window, qtbot, smoother):
    window.open_path(TINY_MAP)
    panel = window.panel
    panel.select("gui-test-smooth")
    panel.set_value("steps", "2")
    progress = []
    panel.progressChanged.connect(lambda f, m: progress.append(f))
    name, prediction = _run(qtbot, panel)
    assert name == "gui-test-smooth" and progress and progress[-1] == 1.0
    assert panel.progress.value() == 1000
    tiny = io.read_map(TINY_MAP)
    expected = smooth_once(smooth_once(tiny.array.astype(np.float32)))
    result = prediction.maps["smoothed"]
    np.testing.assert_allclose(result.array, expected, rtol=1e-5, atol=1e-6)
    view = window.map_view
    assert view.second is result and view.mode == "overlay"  # overlaid on the shown map
    cc = np.corrcoef(tiny.array.ravel(), expected.ravel())[0, 1]
    assert view.correlation == pytest.approx(cc, abs=1e-4)
    assert f"whole cell {cc:.3f}" in view.cc_label.text()
    view.mode_combo.setCurrentText("side by side")
    assert all(c.isVisible() for c in view.second_canvases)


def test_group_prefills_one_member_and_mask_is_overlaid(window, qtbot):
    window.open_path(TINY_MTZ, ask_columns=False)  # reflections and a map: both could fill the 'data' group
    panel = window.panel
    panel.select("gui-test-mask")
    assert panel.field("map").value() is not None
    assert panel.field("reflections").value() is None  # a group lists alternatives: only the first is filled
    name, prediction = _run(qtbot, panel)
    view = window.map_view
    mask = prediction.maps["mask"]
    assert view.second is mask  # the MASK output is the one overlaid
    assert view.stats(mask).binary
    from crysplugins.gui import render

    pixels = _pixels(view.canvases[2]).reshape(-1, 4)[:, :3]
    assert (pixels == np.array(render.CONTOUR_SECOND, dtype=np.uint8)).all(axis=1).any()  # the mask's outline


def test_cancel_a_long_run(window, qtbot, smoother):
    window.open_path(TINY_MAP)
    panel = window.panel
    panel.select("gui-test-smooth")
    total = 10_000_000
    panel.set_value("steps", str(total))
    with qtbot.waitSignal(panel.progressChanged, timeout=10000):
        panel.run()
    assert panel.running and panel.cancel_button.isEnabled() and not panel.run_button.isEnabled()
    with qtbot.waitSignal(panel.runDone, timeout=10000):
        with qtbot.waitSignal(panel.predictionCancelled, timeout=10000):
            qtbot.mouseClick(panel.cancel_button, Qt.MouseButton.LeftButton)
    assert 0 < smoother.steps_done < total
    assert "cancelled" in panel.status.text()
    assert panel.run_button.isEnabled() and not panel.running
    assert not window.results  # nothing was added


def test_predictor_error_is_shown_in_a_dialog(window, qtbot):
    window.open_path(TINY_MAP)
    panel = window.panel
    panel.select("gui-test-fail")
    with qtbot.waitSignal(panel.predictionFailed, timeout=10000) as blocker:
        panel.run()
    assert blocker.args[0] == "gui-test-fail"
    box = panel.last_error_dialog
    assert isinstance(box, QMessageBox) and box.isVisible()
    assert "too small for this model" in box.text()
    box.close()
    # a missing required input is refused with the CLI's sentence, in a dialog as well
    qtbot.waitUntil(lambda: not panel.running, timeout=5000)
    panel.select("gui-test-smooth")
    panel.set_value("map", None)
    with qtbot.waitSignal(panel.predictionFailed, timeout=10000) as blocker:
        panel.run()
    assert 'needs "map"' in blocker.args[1] and "--" not in blocker.args[1]  # the form's label, not a flag
    assert panel.last_error_dialog.isVisible()


def test_bad_file_shows_an_error_dialog(window, tmp_path):
    bad = tmp_path / "broken.ccp4"
    bad.write_bytes(b"this is not a map" * 10)
    assert window.open_path(str(bad)) is None
    box = window.last_error_dialog
    assert isinstance(box, QMessageBox) and box.isVisible()
    assert "not a readable CCP4/MRC map" in box.text()
    assert not window.documents
    box.close()
    assert window.open_path(str(tmp_path / "notes.docx")) is None
    assert "not a file type crysplugins opens" in window.last_error_dialog.text()


def test_plugins_dialog_lists_the_broken_plugin(window):
    assert "gui-test-smooth" in window.panel.names()  # the window works despite the broken plugin
    dialog = window.show_plugins()
    assert dialog.isVisible()
    failures = dialog.failure_texts()
    assert any("gui_broken_plugin" in f and "broken on purpose" in f for f in failures)
    names = [dialog.predictor_table.item(r, 0).text() for r in range(dialog.predictor_table.rowCount())]
    assert "gui-test-smooth" in names


def test_save_results_and_export_png(window, qtbot, tmp_path):
    window.open_path(TINY_MAP)
    panel = window.panel
    panel.select("gui-test-smooth")
    _name, prediction = _run(qtbot, panel)
    result = prediction.maps["smoothed"]
    out = window.save_map(result, tmp_path / "smoothed.ccp4")
    back = io.read_map(out)
    np.testing.assert_allclose(back.array, result.array, rtol=1e-6)
    mtz_path = window.save_map(result, tmp_path / "smoothed.mtz")
    refl = io.read_mtz(mtz_path, need=("F", "PHI"))
    from crysplugins.gui.main_window import map_from_coefficients

    again = map_from_coefficients(refl, "F", "PHI")
    assert _sampled_cc(result, again) > 0.98
    png = window.export_png(tmp_path / "view.png")
    img = QImage(str(png))
    assert not img.isNull() and img.width() == window.map_view.width()
    assert not list(tmp_path.glob(".*.part"))  # atomic writes leave no temporaries


def test_drag_and_drop_opens_files(window):
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(TINY_MAP), QUrl.fromLocalFile(TINY_FASTA)])
    event = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                       Qt.KeyboardModifier.NoModifier)
    window.dropEvent(event)
    kinds = sorted(d.kind for d in window.documents)
    assert kinds == ["map", "sequence"]


def test_ui_stays_responsive_on_a_1rx2_sized_map(window, qtbot, smoother):
    """1RX2: cell 34.32 45.51 98.91 Å, P 21 21 21, ~1.8 Å -> a 72 x 96 x 200 grid (1.38 M voxels).

    Not timed: half-way through, the predictor waits until a 10 ms timer on the GUI thread has fired 20 times
    and opens a gate.  If the run blocked the event loop the gate would never open and the run would fail.
    The tick rate is printed for the record, not asserted.
    """
    rng = np.random.default_rng(0)
    arr = rng.standard_normal((72, 96, 200)).astype(np.float32)
    cmap = CrystalMap.from_array(arr, gemmi.UnitCell(34.32, 45.51, 98.91, 90, 90, 90), "P 21 21 21", "1rx2-sized")
    window.add_map(cmap)
    panel = window.panel
    panel.select("gui-test-smooth")
    panel.set_value("steps", "20")
    smoother.gate = threading.Event()
    ticks: list[float] = []

    def tick() -> None:
        ticks.append(time.monotonic())
        if len(ticks) >= 20:
            smoother.gate.set()

    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(tick)
    t0 = time.monotonic()
    with qtbot.waitSignal(panel.runDone, timeout=120000):
        timer.start()
        panel.run()
    timer.stop()
    elapsed = time.monotonic() - t0
    assert panel.last_error is None, panel.last_error
    assert smoother.gate.is_set() and smoother.steps_done == 20
    gaps = np.diff([t0] + ticks)
    print(f"\n1rx2-sized run (72x96x200): {elapsed:.2f} s, {len(ticks)} ticks of a 10 ms timer, "
          f"longest gap {gaps.max() * 1000:.0f} ms, median {np.median(gaps) * 1000:.1f} ms")
    assert window.map_view.second is not None and window.map_view.second.shape == (72, 96, 200)


def test_real_model_predictor_through_the_panel(qtbot, tmp_path):
    """A shipped model predictor (solvent-mask or patterson-density), its inputs pre-filled from open files."""
    from crysplugins.gui.main_window import MainWindow

    full = Host(autoload=False)
    name = next((n for n in ("solvent-mask", "patterson-density") if n in full.predictors), None)
    if name is None:
        pytest.skip(f"neither solvent-mask nor patterson-density is installed yet (installed: {', '.join(full.names())})")
    w = MainWindow(host=full, settings=QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(w)
    try:
        w.open_path(TINY_MTZ, ask_columns=False)   # reflections (by path) and the F/PHI map
        w.open_path(TINY_FASTA)
        w.panel.select(name)
        got = []
        w.panel.predictionFinished.connect(lambda n, p: got.append(p))
        with qtbot.waitSignal(w.panel.runDone, timeout=300000):
            w.panel.run()
        if w.panel.last_error and "not installed" in w.panel.last_error:
            pytest.skip(f"{name} is installed but its model is not: {w.panel.last_error}")
        assert w.panel.last_error is None, w.panel.last_error
        prediction = got[0]
        assert prediction.maps
        for cmap in prediction.maps.values():
            assert cmap in w.map_view.maps
    finally:
        w.panel.shutdown()


def test_charge_flipping_from_an_open_mtz(window, qtbot):
    """A real map-producing predictor whose REFLECTIONS input is pre-filled from the open MTZ file."""
    if "charge-flipping" not in window.host.predictors:
        pytest.skip("the built-in charge-flipping predictor is not installed")
    window.open_path(TINY_MTZ, ask_columns=False)
    panel = window.panel
    panel.select("charge-flipping")
    spec = next(s for s in window.host.get("charge-flipping").inputs if s.kind is Kind.REFLECTIONS)
    field = panel.field(spec.name)
    assert field.value().value == TINY_MTZ  # the open MTZ, by path, so load_input picks its columns
    dialog = field.open_column_dialog()
    assert dialog is not None and dialog.isVisible()
    assert dialog.columns().get("F") == "F"  # crystal.io's automatic pick
    dialog.accept()
    assert field.columns == dialog.columns()
    for name, value in (("starts", "2"), ("flip_cycles", "120"), ("dm_cycles", "2"), ("seed", "1")):
        if name in panel.fields:
            panel.set_value(name, value)
    n_maps = len(window.map_view.maps)
    messages = []
    panel.progressChanged.connect(lambda f, m: messages.append(m))
    name, prediction = _run(qtbot, panel, timeout=60000)
    assert name == "charge-flipping" and prediction.maps
    # progress from the first flip cycles on (not only after a whole start), and no "full CC nan"
    first_start_done = next(i for i, m in enumerate(messages) if m.startswith("start 1/2:") and "screen CC" in m)
    assert any(m.startswith("start 1/2: charge-flipping cycle 50") for m in messages[:first_start_done])
    assert not any("nan" in m for m in messages)
    assert len(window.map_view.maps) == n_maps + len(prediction.maps)
    for cmap in prediction.maps.values():
        assert cmap.cell.approx(gemmi.UnitCell(15, 18, 21, 90, 100, 90), 1e-3)
    result_refl = [d.obj for d in window.documents if d.kind == "reflections" and d.path is None]
    assert result_refl == list(prediction.reflections.values())  # e.g. the phases, ready to save as MTZ


def test_cli_gui_screenshot(qapp, tmp_path, monkeypatch):
    from crysplugins import cli

    monkeypatch.setenv("CRYSPLUGINS_PLUGINS", "solvent_content")
    monkeypatch.setenv("CRYSPLUGINS_GUI_SETTINGS", str(tmp_path / "settings.ini"))
    monkeypatch.setattr("crysplugins.host._default_host", None)
    out = tmp_path / "window.png"
    assert cli.main(["gui", "--size", "900x600", "--screenshot", str(out), TINY_MAP]) == 0
    img = QImage(str(out))
    assert img.height() == 600 and img.width() >= 900  # docks may need a little more width
    assert cli.main(["gui", "--screenshot", str(out), str(tmp_path / "missing.ccp4")]) == 2


# ----------------------------------------------------------------- cancel (solvent-content's U-net)

def test_cancel_stops_solvent_content_during_the_unet(window, qtbot, monkeypatch):
    """The U-net part reports per tile batch and stops at Cancel: no '100 % done' first, no result."""
    if "solvent-content" not in window.host.predictors:
        pytest.skip("the built-in solvent-content predictor is not installed")
    import importlib

    from crysplugins.plugins import solvent_content

    unet = importlib.import_module(solvent_content.unet_solvent_content.__module__)
    gate = threading.Event()
    real = unet.solvent_probability
    unet_calls = []

    def gated(*args, progress=None, **kwargs):
        def report(fraction, message):
            progress(fraction, message)  # Request.report: raises Cancelled once the GUI cancelled
            unet_calls.append(fraction)
            assert gate.wait(timeout=30), "the GUI never cancelled"
        return real(*args, progress=report, **kwargs)

    monkeypatch.setattr(unet, "solvent_probability", gated)
    window.open_path(TINY_MAP)
    window.open_path(TINY_FASTA)
    panel = window.panel
    panel.select("solvent-content")
    assert panel.field("phasing_map").value() is not None  # the open map is the phasing map
    panel.set_value("resolution", "3.2")
    seen = []
    finished = []
    panel.predictionFinished.connect(lambda *a: finished.append(a))

    def on_progress(fraction, message):
        seen.append((fraction, message))
        if message.startswith("U-net"):
            panel.cancel()
            gate.set()

    panel.progressChanged.connect(on_progress)
    with qtbot.waitSignal(panel.runDone, timeout=60000):
        panel.run()
    assert panel.last_error is None, panel.last_error
    assert seen[0][1] == "Matthews coefficients" and seen[0][0] < 0.5  # the U-net is most of the work
    assert all(f < 1.0 for f, _ in seen) and unet_calls, (seen, unet_calls)
    assert panel.status.text() == "solvent-content cancelled" and panel.progress.value() == 0
    assert not finished and not window.results
    assert window.statusBar().currentMessage() == "solvent-content cancelled"


class LateCancelPredictor:
    """Reports 100 %, then waits for the test before returning: a cancel that arrives too late to stop it."""

    name = "gui-test-late"
    version = "0.1"
    summary = "Test predictor that finishes after its last progress report."
    inputs = (InputSpec("map", Kind.MAP, "a map", required=True),)
    outputs = (OutputSpec("n", Kind.SCALAR, "voxels"),)

    def __init__(self) -> None:
        self.gate = threading.Event()

    def predict(self, request: Request) -> Prediction:
        cmap = request.require("map")
        request.report(1.0, "all done")
        assert self.gate.wait(timeout=30)
        return Prediction(scalars={"n": Scalar(float(cmap.array.size))})


def test_a_result_arriving_after_cancel_is_not_shown_as_done(qtbot, tmp_path):
    from crysplugins.gui.main_window import MainWindow

    late = LateCancelPredictor()
    host = Host(autoload=False, only=[], extra_plugins=[("late", _Plugin(late))])
    w = MainWindow(host=host, settings=QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(w)
    w.open_path(TINY_MAP)
    panel = w.panel
    finished = []
    panel.predictionFinished.connect(lambda *a: finished.append(a))
    with qtbot.waitSignal(panel.progressChanged, timeout=10000):
        panel.run()
    panel.cancel()
    assert panel.status.text() == "cancelling gui-test-late…" and not panel.cancel_button.isEnabled()
    with qtbot.waitSignal(panel.runDone, timeout=10000):
        with qtbot.waitSignal(panel.predictionCancelled, timeout=10000):
            late.gate.set()
    assert not finished and not w.results and panel.status.text() == "gui-test-late cancelled"
    panel.shutdown()


# ------------------------------------------------------------- probability maps and masks: own units

def _fraction_maps(tiny: CrystalMap) -> tuple[CrystalMap, CrystalMap]:
    arr = tiny.array.astype(np.float64)
    prob = 1.0 / (1.0 + np.exp((arr - arr.mean()) / arr.std()))  # high where the density is low
    p = CrystalMap.from_array(prob, tiny.cell, tiny.spacegroup, "probability", units="P(solvent)")
    m = CrystalMap.from_array((prob > 0.55).astype(np.float32), tiny.cell, tiny.spacegroup, "mask", units="solvent=1")
    return p, m


def test_probability_and_mask_maps_use_their_own_units(window, qtbot):
    from crysplugins.gui import render

    view = window.map_view
    density = window.open_path(TINY_MAP).obj
    assert view.level_spin.suffix() == " σ" and view.level_spin.value() == 1.0
    view.level_spin.setValue(1.5)
    prob, mask = _fraction_maps(density)
    window.add_map(mask, show=False)
    window.add_map(prob)
    # a probability map: level 0.5 in P, not 1.5 σ; the contour is where P crosses 0.5
    assert view.level_spin.suffix() == " P" and view.level_spin.value() == 0.5
    assert "P(solvent) from" in view.info_label.text() and "σ" not in view.info_label.text()
    k = view.slice_index(2)
    values = render.take_slice(prob.array, 2, k)
    factor = render.upsample_factor(values.shape)
    expected = render.contour_mask(render.upsample_periodic(values, factor), 0.5)
    pixels = _pixels(view.canvases[2]).reshape(factor * values.shape[1], factor * values.shape[0], 4)
    drawn = (pixels[::-1, :, :3].transpose(1, 0, 2) == np.array(render.CONTOUR_PRIMARY, dtype=np.uint8)).all(axis=2)
    np.testing.assert_array_equal(drawn, expected)
    # compare like with like: no density-vs-probability correlation
    view.set_second(density)
    assert view.correlation is None and "not correlated" in view.cc_label.text()
    # two fraction maps: the agreement on either side of the level, computed here independently
    view.set_second(mask)
    agree = float(((prob.array >= 0.5) == (mask.array >= 0.5)).mean())
    assert view.agreement == pytest.approx(agree) and f"{agree:.1%}" in view.cc_label.text()
    # the mask says what it is; back on the density the σ level it had is kept
    view.show_map(mask)
    assert view.info_label.text().endswith(f"mask: {mask.array.mean():.1%} of the cell at 1, the rest 0")
    view.show_map(density)
    assert view.level_spin.suffix() == " σ" and view.level_spin.value() == 1.5
    assert "mean" in view.info_label.text() and "e-" not in view.info_label.text().split("mean")[1]


def test_map_from_an_mtz_reads_mean_zero_and_asks_for_both_columns(window):
    window.open_path(TINY_MTZ)
    dialog = window.last_column_dialog
    from PyQt6.QtWidgets import QLabel

    labels = [w.text() for w in dialog.findChildren(QLabel)]
    assert not any("optional" in t for t in labels)  # a map needs both F and φ
    assert "Grid spacing" in labels and "d_min / " == dialog.sampling_spin.prefix()
    d_min = window.documents[0].obj.d_min
    assert dialog.spacing_label.text() == f"= {d_min / 3:.2f} Å"
    dialog.sampling_spin.setValue(4.0)
    assert dialog.spacing_label.text() == f"= {d_min / 4:.2f} Å"
    dialog.accept()
    assert "mean 0," in window.map_view.info_label.text()


# ------------------------------------------------------------------------------------ models

def test_model_atoms_drawn_near_each_plane_with_symmetry_mates(qtbot):
    from crysplugins.gui.map_view import ELEMENT_COLOURS, MODEL_NEAR_A, MapView

    view = MapView()
    qtbot.addWidget(view)
    view.resize(900, 500)
    view.show()
    cell = gemmi.UnitCell(20, 24, 30, 90, 90, 90)
    view.add_map(CrystalMap.from_array(np.random.default_rng(1).standard_normal((20, 24, 30)), cell, "P 1 21 1", "p21"))
    assert all(c.image is not None for c in view.canvases)
    st = gemmi.Structure()
    st.cell = cell
    model, chain, residue = gemmi.Model("1"), gemmi.Chain("A"), gemmi.Residue()
    residue.name = "SER"
    atom = gemmi.Atom()
    atom.name, atom.element = "OG", gemmi.Element("O")
    atom.pos = cell.orthogonalize(gemmi.Fractional(0.25, 0.1, 0.5))
    residue.add_atom(atom)
    chain.add_residue(residue)
    model.add_chain(chain)
    st.add_model(model)
    view.set_model(st, "one atom")
    view.set_slice(2, 15)  # c = 0.5: the atom and its 2_1 mate (-x, y + 1/2, -z) = (0.75, 0.6, 0.5)
    red = ELEMENT_COLOURS["O"]
    assert sorted(view.canvases[2].atoms) == [(0.25, pytest.approx(0.1), red), (0.75, pytest.approx(0.6), red)]
    assert "2 atoms" in view.canvases[2].caption
    view.set_slice(2, 17)  # 2 grid points = 2 Å away
    assert view.canvases[2].atoms == [] and 2 * 30 / 30 > MODEL_NEAR_A
    view.set_slice(2, 15)
    # the dot is painted where the atom is: sample the widget at the screen point of (a, b) = (0.25, 0.1)
    canvas = view.canvases[2]
    origin, h, v = canvas._geometry()
    point = origin + h * 0.25 + v * 0.1
    image = canvas.grab().toImage()
    colour = image.pixelColor(int(round(point.x() * image.devicePixelRatio())), int(round(point.y() * image.devicePixelRatio())))
    assert (colour.red(), colour.green(), colour.blue()) == red


def test_open_model_offers_its_sequence(window):
    frag = os.path.join(DATA, "frag5.pdb")
    window.open_path(TINY_MAP)
    window.open_path(frag)
    st = gemmi.read_structure(frag)
    expected = gemmi.one_letter_code([r.name for r in st[0]["A"]])
    seqs = [d for d in window.documents if d.kind == "sequence"]
    assert [s.obj.residues for s in seqs] == [expected] == ["FKRNT"]
    assert window.map_view.model is not None
    assert any("atoms ±1 Å" in c.caption for c in window.map_view.canvases)
    if "solvent-content" in window.host.predictors:
        window.panel.select("solvent-content")
        assert window.panel.field("sequence").value().value.residues == "FKRNT"


def test_empty_view_draws_no_cell_box(qtbot):
    from crysplugins.gui.map_view import MapView

    view = MapView()
    qtbot.addWidget(view)
    view.resize(700, 400)
    view.show()
    image = view.canvases[0].grab().toImage().convertToFormat(QImage.Format.Format_RGBA8888)
    ptr = image.constBits()
    ptr.setsize(image.sizeInBytes())
    pixels = np.frombuffer(ptr, dtype=np.uint8).reshape(-1, 4)[:, :3]
    assert (pixels == np.array([24, 24, 28], dtype=np.uint8)).all()  # background only, no yellow edges
    assert not view.level_spin.isEnabled()


# ------------------------------------------------------------------------------------ layout

@pytest.mark.parametrize("size", [(1366, 740), (1024, 700)])
def test_solvent_content_form_is_whole_on_a_laptop_screen(qtbot, host, tmp_path, size):
    from crysplugins.gui.main_window import MainWindow

    if "solvent-content" not in host.predictors:
        pytest.skip("the built-in solvent-content predictor is not installed")
    w = MainWindow(host=host, settings=QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(w)
    w.resize(*size)
    w.show()
    qtbot.waitExposed(w)
    w.open_path(TINY_MAP)
    panel = w.panel
    panel.select("solvent-content")
    assert (w.width(), w.height()) == size  # the window fits the screen it was sized for
    from PyQt6.QtWidgets import QApplication

    QApplication.processEvents()  # the pending layout of the new form
    viewport = panel.scroll.viewport()
    print(f"{size}: predictor dock {w.panel_dock.width()} px, form viewport {viewport.height()} px high")
    rect = viewport.rect()
    assert len(panel.fields) == 7
    for name, field in panel.fields.items():
        top_left = field.widget.mapTo(viewport, field.widget.rect().topLeft())
        bottom_right = field.widget.mapTo(viewport, field.widget.rect().bottomRight())
        assert rect.contains(top_left) and rect.contains(bottom_right), (name, size)
    assert w.map_view.width() >= 400


def test_data_details_column_keeps_its_width_after_long_names(window):
    tiny = window.open_path(TINY_MAP).obj
    for i in range(3):
        long = CrystalMap.from_array(tiny.array, tiny.cell, tiny.spacegroup,
                                     f"patterson-density density_prediction_of_a_long_result_name {i}")
        window.add_map(long, show=False)
    tree = window.data_tree
    width = tree.fontMetrics().horizontalAdvance("10×12×14")
    assert tree.columnWidth(1) >= width
    assert tree.columnWidth(0) + tree.columnWidth(1) <= tree.viewport().width()
    item = tree.topLevelItem(0).child(1)
    assert item.toolTip(0).startswith("patterson-density density_prediction")  # full name on hover


# ------------------------------------------------------------------------------------ wording

def test_messages_name_the_form_not_the_command_line(window, qtbot):
    from crysplugins.gui.predictor_panel import gui_wording

    specs = (InputSpec("molecular_weight", Kind.FLOAT, ""), InputSpec("reflections", Kind.REFLECTIONS, ""),
             InputSpec("sequence", Kind.SEQUENCE, ""))
    assert gui_wording("solvent-content needs --sequence or --molecular-weight.", specs) == \
        'solvent-content needs "sequence" or "molecular weight".'
    assert gui_wording("The MTZ file x.mtz has no F column; name one with --columns (columns: FP(F)).", specs) == \
        'The MTZ file x.mtz has no F column; name one with the "cols" button next to the MTZ file (columns: FP(F)).'
    assert gui_wording("name them with --reflections-columns", specs) == 'name them with the "cols" button of "reflections"'
    assert gui_wording("needs the input 'molecular_weight'", specs) == 'needs the input "molecular weight"'
    assert gui_wording("x needs one of: sequence, molecular_weight.", specs) == "x needs one of: sequence, molecular weight."
    assert gui_wording("see /tmp/molecular_weight.txt", specs) == "see /tmp/molecular_weight.txt"  # paths stay
    if "solvent-content" not in window.host.predictors:
        return
    window.open_path(TINY_MAP)
    panel = window.panel
    panel.select("solvent-content")
    with qtbot.waitSignal(panel.predictionFailed, timeout=10000) as blocker:
        panel.run()
    assert "--" not in blocker.args[1] and "_" not in blocker.args[1], blocker.args[1]
    assert "molecular weight" in panel.last_error_dialog.text()
    assert window.statusBar().currentMessage().startswith("solvent-content failed")
    panel.last_error_dialog.close()
    qtbot.waitUntil(lambda: not panel.running, timeout=5000)
    panel.select("gui-test-smooth")  # another predictor: the last run's status goes
    assert panel.status.text() == "" and panel.progress.value() == 0
    assert [panel.layout().itemAt(i).widget() for i in range(panel.layout().count())].count(None) <= 1
    from PyQt6.QtWidgets import QLabel

    assert not [l for l in panel.findChildren(QLabel) if l.text() == "Predictors"]  # the dock's title says it


def test_charge_flipping_says_when_a_cell_is_a_proteins(window, qtbot):
    """A protein-sized cell: the hint that charge flipping is for small P1 fragments comes at once."""
    if "charge-flipping" not in window.host.predictors:
        pytest.skip("the built-in charge-flipping predictor is not installed")
    from crysplugins.crystal.io import make_mtz

    cell = gemmi.UnitCell(50, 60, 70, 90, 90, 90)
    hkl = np.array([[h, k, l] for h in range(0, 6) for k in range(-7, 8) for l in range(-8, 9)
                    if (h, k, l) > (0, 0, 0) and 1 / cell.calculate_d([h, k, l]) ** 0 and cell.calculate_d([h, k, l]) >= 8])
    f = np.random.default_rng(2).uniform(10, 100, len(hkl))
    path = os.path.join(window.settings.fileName() + "_big.mtz")
    make_mtz(cell, gemmi.SpaceGroup("P 1"), hkl, {"F": ("F", f)}).write_to_file(path)
    window.open_path(path, ask_columns=False)
    panel = window.panel
    panel.select("charge-flipping")
    messages = []
    panel.progressChanged.connect(lambda fr, m: (messages.append(m), panel.cancel()))
    with qtbot.waitSignal(panel.runDone, timeout=60000):
        panel.run()
    assert "meant for small P1 fragment cells" in messages[0] and "210,000 Å³" in messages[0]


# ------------------------------------------------------------------------------ no display

def test_no_display_is_one_sentence(tmp_path):
    from crysplugins.gui.app import XCB_LIBRARIES, display_problem

    assert display_problem({}, "linux").startswith("There is no display to open the window on")
    assert display_problem({"WAYLAND_DISPLAY": "wayland-0"}, "linux") is None
    assert display_problem({"QT_QPA_PLATFORM": "offscreen"}, "linux") is None
    assert display_problem({}, "darwin") is None
    missing = {"libxcb-cursor.so.0", "libxcb-icccm.so.4"}
    text = display_problem({"DISPLAY": ":0"}, "linux", loads=lambda lib: lib not in missing)
    assert text == ("The desktop app needs X11 libraries that are not installed: libxcb-cursor0, libxcb-icccm4 "
                    "(Debian/Ubuntu: sudo apt-get install libxcb-cursor0 libxcb-icccm4).")
    assert display_problem({"DISPLAY": ":0"}, "linux", loads=lambda lib: True) is None
    assert set(XCB_LIBRARIES.values()) >= {"libxcb-cursor0", "libxcb-icccm4", "libxcb-keysyms1"}
    # the real command: one sentence, exit 2, no Qt abort (134)
    import subprocess
    import sys

    if not sys.platform.startswith("linux"):
        return  # elsewhere Qt needs no DISPLAY: the command would open a window

    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    proc = subprocess.run([sys.executable, "-m", "crysplugins.cli", "gui"], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: There is no display")
