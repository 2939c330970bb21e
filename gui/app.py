"""Entry points of the desktop app: ``crysplugins gui [FILES...]`` and the ``crysplugins-gui`` script.

``--screenshot PNG`` opens the files, saves a PNG of the whole window and exits (no event loop left
running), which also works offscreen (``QT_QPA_PLATFORM=offscreen``).

Before Qt starts, :func:`display_problem` checks on Linux that there is a display and that the X11
libraries of Qt's xcb platform plugin load; otherwise Qt would abort the process (exit 134) with a
message about plugins instead of saying what is missing.
"""
from __future__ import annotations

import argparse
import ctypes
import os
import sys
from pathlib import Path
from typing import Callable, Mapping, Sequence

from PyQt6.QtWidgets import QApplication

from crysplugins.errors import CrysError

#: shared libraries Qt's X11 platform plugin (xcb) loads beyond a bare system, with their Debian/Ubuntu packages
XCB_LIBRARIES = {
    "libxcb-cursor.so.0": "libxcb-cursor0", "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-keysyms.so.1": "libxcb-keysyms1", "libxcb-image.so.0": "libxcb-image0",
    "libxcb-render-util.so.0": "libxcb-render-util0", "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-randr.so.0": "libxcb-randr0", "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0", "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-sync.so.1": "libxcb-sync1", "libxcb-shm.so.0": "libxcb-shm0", "libxcb-util.so.1": "libxcb-util1",
    "libX11-xcb.so.1": "libx11-xcb1", "libGL.so.1": "libgl1", "libEGL.so.1": "libegl1",
    "libfontconfig.so.1": "libfontconfig1", "libdbus-1.so.3": "libdbus-1-3",
}


def _loads(name: str) -> bool:
    try:
        ctypes.CDLL(name)
    except OSError:
        return False
    return True


def display_problem(env: Mapping[str, str] | None = None, platform: str | None = None,
                    loads: Callable[[str], bool] = _loads) -> str | None:
    """One sentence saying why Qt cannot open a window here, or None when it can (or we cannot tell).

    Only Linux with Qt's default or xcb platform is checked: no DISPLAY (and no Wayland session), or X11
    libraries of the xcb plugin that do not load (named with their Debian/Ubuntu packages)."""
    env = os.environ if env is None else env
    platform = sys.platform if platform is None else platform
    qpa = env.get("QT_QPA_PLATFORM", "").strip().split(":")[0]
    if not platform.startswith("linux") or qpa not in ("", "xcb"):
        return None
    if not env.get("DISPLAY"):
        if qpa == "" and env.get("WAYLAND_DISPLAY"):
            return None
        return ("There is no display to open the window on (DISPLAY is not set): run 'crysplugins gui' in a "
                "desktop session, over 'ssh -X', or under 'xvfb-run'; for --screenshot alone, set "
                "QT_QPA_PLATFORM=offscreen.")
    missing = [package for lib, package in XCB_LIBRARIES.items() if not loads(lib)]
    if missing:
        return ("The desktop app needs X11 libraries that are not installed: "
                f"{', '.join(missing)} (Debian/Ubuntu: sudo apt-get install {' '.join(missing)}).")
    return None


def _configure(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("files", nargs="*", help="maps (.ccp4/.map/.mrc), MTZ, coordinates or sequences to open")
    parser.add_argument("--screenshot", metavar="PNG", default=None,
                        help="save a PNG of the window after opening the files, then exit")
    parser.add_argument("--size", metavar="WxH", default="1400x860", help="window size in pixels (default 1400x860)")
    return parser


def add_parser(sub) -> argparse.ArgumentParser:  # noqa: ANN001 (argparse subparsers action)
    """Register ``crysplugins gui`` on the CLI's subparsers."""
    p = sub.add_parser("gui", help="open the desktop app (PyQt6)",
                       description="Open the crysplugins desktop app: look at maps, run any installed predictor.")
    _configure(p)
    p.set_defaults(func=run)
    return p


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise CrysError(f"--size must look like 1400x860, not '{text}'.") from None
    if w < 200 or h < 200:
        raise CrysError(f"--size must be at least 200x200 pixels, not '{text}'.")
    return w, h


def run(args: argparse.Namespace) -> int:
    """Open the window (and the files); returns the exit code of the Qt event loop."""
    size = _size(args.size)
    for f in args.files:
        if not Path(f).exists():
            raise CrysError(f"The file {f} does not exist.")
    problem = display_problem() if QApplication.instance() is None else None
    if problem:
        raise CrysError(problem)
    app = QApplication.instance() or QApplication([sys.argv[0] if sys.argv else "crysplugins"])
    app.setApplicationName("crysplugins")
    app.setOrganizationName("crysplugins")
    from crysplugins.gui.main_window import MainWindow

    window = MainWindow()
    window.resize(*size)
    for f in args.files:
        window.open_path(f, ask_columns=args.screenshot is None)
    window.show()
    if args.screenshot:
        app.processEvents()
        out = window.export_png(args.screenshot, widget=window)
        print(f"wrote {out}")
        window.close()
        if window.last_error:
            print(f"error: {window.last_error}", file=sys.stderr)
            return 1
        return 0
    return int(app.exec())


def main(argv: Sequence[str] | None = None) -> int:
    """The ``crysplugins-gui`` console script."""
    parser = _configure(argparse.ArgumentParser(
        prog="crysplugins-gui", description="Open the crysplugins desktop app: look at maps, run any installed predictor."))
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        return run(args)
    except CrysError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
