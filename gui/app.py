"""Entry points of the desktop app: ``crysplugins gui [FILES...]`` and the ``crysplugins-gui`` script.

``--screenshot PNG`` opens the files, saves a PNG of the whole window and exits (no event loop left
running), which also works offscreen (``QT_QPA_PLATFORM=offscreen``).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from PyQt6.QtWidgets import QApplication

from crysplugins.errors import CrysError


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
