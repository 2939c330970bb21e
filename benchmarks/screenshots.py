"""Take the README screenshots of the desktop app (offscreen; PNGs under docs/screenshots/).

Reads the real 1RX2 data of the shared corpus: ../shared/corpus/diffraction/1rx2_phases.mtz (relative to
the repository, i.e. /work/shared; override with --mtz).  The map is made from FWT/PHWT (gemmi FFT,
sampling 3 × d_min), the sequence is the 1RX2 example shipped in the package, and the predictions are run
through the predictor panel exactly as a user would (worker thread, result signal).

    QT_QPA_PLATFORM=offscreen .venv/bin/python benchmarks/screenshots.py [--out docs/screenshots]

Images are saved with a 256-colour palette to stay small (< 300 KB each).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("OMP_NUM_THREADS", "1")

from PyQt6.QtCore import QEventLoop, QSettings, Qt, QTimer  # noqa: E402
from PyQt6.QtGui import QImage  # noqa: E402
from PyQt6.QtWidgets import QApplication, QWidget  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MTZ = REPO.parent / "shared" / "corpus" / "diffraction" / "1rx2_phases.mtz"


def save_small_png(widget: QWidget, path: Path) -> int:
    """Grab ``widget`` and save it as an 8-bit palette PNG; returns the file size in bytes."""
    img = widget.grab().toImage().convertToFormat(QImage.Format.Format_Indexed8,
                                                  Qt.ImageConversionFlag.DiffuseDither)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not img.save(str(path), "PNG"):
        raise SystemExit(f"could not write {path}")
    return path.stat().st_size


def run_panel(app: QApplication, panel, timeout_s: float = 600.0) -> str:
    """Run the panel's selected predictor and spin the event loop until it is done.

    A 10 ms QTimer counts event-loop ticks meanwhile; returns "seconds, ticks/s, longest gap".
    """
    loop = QEventLoop()
    panel.runDone.connect(loop.quit)
    QTimer.singleShot(int(timeout_s * 1000), loop.quit)
    ticks: list[float] = []
    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(lambda: ticks.append(time.monotonic()))
    timer.start()
    t0 = time.monotonic()
    panel.run()
    loop.exec()
    t1 = time.monotonic()
    timer.stop()
    panel.runDone.disconnect(loop.quit)
    gap = max(b - a for a, b in zip([t0] + ticks, ticks + [t1]))
    return f"{t1 - t0:.2f} s, {len(ticks) / (t1 - t0):.0f} timer ticks/s, longest gap {gap * 1000:.0f} ms"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mtz", default=str(DEFAULT_MTZ), help="MTZ with FWT/PHWT (default: the 1RX2 corpus file)")
    parser.add_argument("--out", default=str(REPO / "docs" / "screenshots"))
    args = parser.parse_args(argv)
    app = QApplication.instance() or QApplication(sys.argv[:1])
    from crysplugins.gui.main_window import MainWindow
    from crysplugins.host import default_host

    host = default_host()
    settings = QSettings(os.path.join(tempfile.mkdtemp(), "s.ini"), QSettings.Format.IniFormat)
    window = MainWindow(host=host, settings=settings)
    window.resize(1280, 800)
    window.show()
    app.processEvents()
    out = Path(args.out)

    window.open_path(args.mtz, ask_columns=False, columns={"F": "FWT", "PHI": "PHWT"})
    fasta = resources.files("crysplugins") / "data" / "examples" / "1rx2.fasta"
    with resources.as_file(fasta) as seq_path:
        window.open_path(str(seq_path))
    view = window.map_view
    cmap = view.current
    print(f"map {cmap.name}: grid {cmap.shape}, cell {cmap.cell.parameters}")
    view.set_slice(0, int(cmap.shape[0] * 0.40))
    view.set_slice(1, int(cmap.shape[1] * 0.25))
    view.set_slice(2, int(cmap.shape[2] * 0.30))
    view.level_spin.setValue(1.2)
    app.processEvents()
    sizes = {"main_window_map.png": save_small_png(window, out / "main_window_map.png")}

    panel = window.panel
    if "solvent-content" in host.predictors:
        panel.select("solvent-content")
        app.processEvents()
        print(f"solvent-content: {run_panel(app, panel)}; {panel.status.text()}")
    solvent = panel.last_prediction.scalars["solvent_fraction"].value if panel.last_prediction else 0.45
    # a map-producing predictor: the model one when its model is installed, else the classical mask;
    # its mask is overlaid on the density (orange contour)
    for name in ("solvent-mask", "patterson-density", "solvent-mask-local-variance"):
        if name not in host.predictors:
            continue
        panel.select(name)
        if "solvent_fraction" in panel.fields:
            panel.set_value("solvent_fraction", f"{solvent:.3f}")
        app.processEvents()
        panel.last_error = None
        print(f"{name}: {run_panel(app, panel)}; {panel.status.text()}")
        if panel.last_error is None:
            break
        if panel.last_error_dialog is not None:
            panel.last_error_dialog.close()
    app.processEvents()
    sizes["main_window_prediction.png"] = save_small_png(window, out / "main_window_prediction.png")
    # compare the 2mFo-DFc map with the model map (FC_ALL/PHIC_ALL) of the same MTZ: same grid -> CC readout
    fwt_map = view.current
    window.open_path(args.mtz, ask_columns=False, columns={"F": "FC_ALL", "PHI": "PHIC_ALL"})
    model_map = view.current
    view.show_map(fwt_map)
    view.set_second(model_map, mode="overlay")
    app.processEvents()
    print(view.cc_label.text())
    sizes["main_window_compare.png"] = save_small_png(window, out / "main_window_compare.png")
    window.show_plugins()
    app.processEvents()
    sizes["plugins_dialog.png"] = save_small_png(window.plugins_dialog, out / "plugins_dialog.png")
    window.plugins_dialog.close()
    for name, size in sizes.items():
        print(f"wrote {out / name} ({size / 1024:.0f} KB)")
    window.panel.shutdown()
    window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
