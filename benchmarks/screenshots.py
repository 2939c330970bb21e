"""Take the README screenshots of the desktop app in a real window (X11, e.g. under Xvfb); PNGs under docs/screenshots/.

Reads the real 1RX2 data of the shared corpus (../shared/corpus/diffraction/1rx2_phases.mtz and 1rx2.pdb,
relative to the repository, i.e. /work/shared; override with --mtz / --model).  The map is made from
FWT/PHWT (gemmi FFT, grid spacing d_min / 3), the predictions run through the predictor panel exactly as a
user's would (worker thread, signals), and each picture is taken from the screen (``QScreen.grabWindow``),
i.e. what the X server shows, not an offscreen rendering.

    Xvfb :57 -screen 0 1600x1000x24 &
    DISPLAY=:57 QT_QPA_PLATFORM=xcb .venv/bin/python benchmarks/screenshots.py [--out docs/screenshots]

(``xvfb-run -s "-screen 0 1600x1000x24" python benchmarks/screenshots.py`` does the same.)  Images are
saved with a 256-colour palette to stay small.  The window is 1366×740 (a common laptop screen) except for
the 1024×700 layout picture.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

from PyQt6.QtCore import QEventLoop, QSettings, Qt, QTimer  # noqa: E402
from PyQt6.QtGui import QImage  # noqa: E402
from PyQt6.QtWidgets import QApplication, QWidget  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus" / "diffraction"


def settle(app: QApplication, ms: int = 400) -> None:
    """Let the X server map and paint the window (events for ``ms`` milliseconds)."""
    loop = QEventLoop()
    QTimer.singleShot(ms, loop.quit)
    loop.exec()
    app.processEvents()


def save_screen_png(app: QApplication, widget: QWidget, path: Path) -> int:
    """Grab ``widget``'s window from the screen and save it as an 8-bit palette PNG; returns bytes written."""
    settle(app)
    top = widget.window()
    geo = top.frameGeometry()
    pixmap = app.primaryScreen().grabWindow(0, geo.x(), geo.y(), geo.width(), geo.height())
    # no dithering: flat palette areas compress several times better than dithered noise
    img = pixmap.toImage().convertToFormat(QImage.Format.Format_Indexed8, Qt.ImageConversionFlag.ThresholdDither
                                           | Qt.ImageConversionFlag.AvoidDither)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not img.save(str(path), "PNG"):
        raise SystemExit(f"could not write {path}")
    print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KB, {img.width()}×{img.height()})")
    return path.stat().st_size


def run_panel(panel, timeout_s: float = 900.0) -> float:
    """Run the panel's selected predictor, spinning the event loop until it is done; returns seconds."""
    loop = QEventLoop()
    panel.runDone.connect(loop.quit)
    QTimer.singleShot(int(timeout_s * 1000), loop.quit)
    t0 = time.monotonic()
    panel.run()
    loop.exec()
    panel.runDone.disconnect(loop.quit)
    return time.monotonic() - t0


def new_window(app: QApplication, size: tuple[int, int], mtz: str, model: str | None):
    from crysplugins.gui.main_window import MainWindow

    settings = QSettings(os.path.join(tempfile.mkdtemp(), "s.ini"), QSettings.Format.IniFormat)
    window = MainWindow(settings=settings)
    window.resize(*size)
    window.show()
    settle(app)
    window.open_path(mtz, ask_columns=False, columns={"F": "FWT", "PHI": "PHWT"})
    if model:
        window.open_path(model)
    return window


def shot_layout(app, args, size: tuple[int, int], name: str) -> None:
    """Item 10: the solvent-content form whole at ``size``, the model's sequence offered (item 9)."""
    window = new_window(app, size, args.mtz, args.model)
    window.panel.select("solvent-content")
    save_screen_png(app, window, args.out / name)
    window.panel.shutdown()
    window.close()


def shot_cancel(app, args) -> None:
    """Item 7: solvent-content with a phasing map reports the U-net's progress, and Cancel stops it."""
    window = new_window(app, (1366, 740), args.mtz, args.model)
    panel = window.panel
    panel.select("solvent-content")
    seen: list[tuple[float, str]] = []
    loop = QEventLoop()

    def progress(fraction: float, message: str) -> None:
        seen.append((fraction, message))
        if message.startswith("U-net") and fraction > 0.3:
            loop.quit()

    panel.progressChanged.connect(progress)
    panel.run()
    QTimer.singleShot(600_000, loop.quit)
    loop.exec()
    panel.progressChanged.disconnect(progress)
    print(f"running: {panel.status.text()!r}, bar {panel.progress.value() / 10:.1f} %")
    save_screen_png(app, window, args.out / "cancel_1_running.png")
    done = QEventLoop()
    panel.runDone.connect(done.quit)
    t0 = time.monotonic()
    panel.cancel_button.click()
    done.exec()
    print(f"cancelled after {time.monotonic() - t0:.2f} s: {panel.status.text()!r}; results {len(window.results)}")
    save_screen_png(app, window, args.out / "cancel_2_cancelled.png")
    window.close()


def shot_probability(app, args) -> None:
    """Item 8: solvent-mask's P(solvent) map contoured at 0.5 in its own units; the density only overlaid.
    The Data list keeps its details column after long result names (item 10)."""
    window = new_window(app, (1366, 740), args.mtz, None)
    panel = window.panel
    panel.select("solvent-mask")
    seconds = run_panel(panel)
    print(f"solvent-mask: {seconds:.1f} s; {panel.status.text()}")
    view = window.map_view
    density = view.maps[0]
    prob = next(m for m in view.maps if m.name.endswith("solvent_probability"))
    view.show_map(prob)
    view.set_second(density, mode="overlay")
    view.set_slice(2, int(prob.shape[2] * 0.3))
    print(f"level box {view.level_spin.text()!r}; info {view.info_label.text()!r}; compare {view.cc_label.text()!r}")
    save_screen_png(app, window, args.out / "probability_map.png")
    window.close()


def shot_model(app, args) -> None:
    """Item 9: the 1RX2 model's atoms within 1 Å of each slice plane, on the 2mFo-DFc map."""
    window = new_window(app, (1366, 740), args.mtz, args.model)
    view = window.map_view
    view.level_spin.setValue(1.2)
    window.panel.select("solvent-content")
    print(f"model: {[view.canvases[ax].title for ax in range(3)]}")
    save_screen_png(app, window, args.out / "model_atoms.png")
    window.close()


def shot_readme(app, args) -> None:
    """The README's overview pictures: the map with its model, a prediction overlaid, a comparison of two
    maps of one grid (2mFo-DFc against the model map FC_ALL/PHIC_ALL: Pearson CC) and the plugins dialog."""
    window = new_window(app, (1366, 740), args.mtz, args.model)
    view = window.map_view
    density = view.current
    view.set_slice(0, int(density.shape[0] * 0.40))
    view.set_slice(1, int(density.shape[1] * 0.25))
    view.set_slice(2, int(density.shape[2] * 0.30))
    view.level_spin.setValue(1.2)
    save_screen_png(app, window, args.out / "main_window_map.png")
    panel = window.panel
    panel.select("solvent-mask")
    print(f"solvent-mask: {run_panel(panel):.1f} s; {panel.status.text()}")
    save_screen_png(app, window, args.out / "main_window_prediction.png")
    window.open_path(args.mtz, ask_columns=False, columns={"F": "FC_ALL", "PHI": "PHIC_ALL"})
    model_map = view.current
    view.show_map(density)
    view.set_second(model_map, mode="overlay")
    print(view.cc_label.text())
    save_screen_png(app, window, args.out / "main_window_compare.png")
    dialog = window.show_plugins()
    save_screen_png(app, dialog, args.out / "plugins_dialog.png")
    dialog.close()
    window.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mtz", default=str(CORPUS / "1rx2_phases.mtz"), help="MTZ with FWT/PHWT")
    parser.add_argument("--model", default=str(CORPUS / "1rx2.pdb"), help="the model of the MTZ's crystal")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "screenshots")
    parser.add_argument("--only", nargs="*", default=None, help="layout, model, probability, cancel, readme")
    args = parser.parse_args(argv)
    if os.environ.get("QT_QPA_PLATFORM", "xcb") != "xcb" or not os.environ.get("DISPLAY"):
        raise SystemExit("screenshots are taken from a real X11 screen: set DISPLAY (e.g. Xvfb) and QT_QPA_PLATFORM=xcb")
    app = QApplication.instance() or QApplication(sys.argv[:1])
    shots = {"layout": lambda: (shot_layout(app, args, (1366, 740), "form_1366x740.png"),
                                shot_layout(app, args, (1024, 700), "form_1024x700.png")),
             "model": lambda: shot_model(app, args),
             "probability": lambda: shot_probability(app, args),
             "cancel": lambda: shot_cancel(app, args),
             "readme": lambda: shot_readme(app, args)}
    for name in args.only or list(shots):
        shots[name]()
    return 0


if __name__ == "__main__":
    sys.exit(main())
