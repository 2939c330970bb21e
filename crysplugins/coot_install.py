"""``crysplugins coot-install``: put the crysplugins menu script where Coot loads its start-up scripts.

Coot 1.x (1.1.10 and later) runs every ``*.py`` in ``~/.config/Coot/`` (``$XDG_CONFIG_HOME/Coot``);
Coot 0.9 runs every ``*.py`` in ``~/.coot-preferences/``.  The script
(:mod:`crysplugins.coot_scripts.crysplugins_coot`) runs inside Coot's own Python, which is usually not
the Python crysplugins is installed in, so the copy gets the absolute path of this installation's
``crysplugins`` executable written into its ``CRYSPLUGINS_COMMAND = ...`` line.

Options: ``--coot-dir DIR`` (repeatable; default both folders above), ``--dry-run`` (say what would be
done), ``--uninstall`` (remove the script, only files this command wrote), ``--command CMD`` (the
command to bake in instead of the detected one).  Every write is atomic.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
from importlib import resources
from pathlib import Path

from crysplugins.crystal.io import atomic_path
from crysplugins.errors import CrysError

SCRIPT_NAME = "crysplugins_coot.py"
COMMAND_LINE = "CRYSPLUGINS_COMMAND = None"
#: text that marks a file as written by this command (checked before --uninstall removes a file)
MARKER = "# Installed by `crysplugins coot-install`"


def default_coot_dirs() -> list[Path]:
    """Coot 1.x's and Coot 0.9's start-up script folders for the current user."""
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return [Path(config) / "Coot", Path.home() / ".coot-preferences"]


def find_command() -> list[str]:
    """The command that runs this installation's crysplugins, as absolute paths.

    The ``crysplugins`` script next to ``sys.executable`` (the virtual environment or conda env this
    runs in), else the one on PATH, else ``python -m crysplugins.cli`` with this interpreter.
    """
    exe_dir = Path(sys.executable).parent
    for name in ("crysplugins", "crysplugins.exe"):
        for folder in (exe_dir, exe_dir / "Scripts"):
            candidate = folder / name
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return [str(candidate.absolute())]
    found = shutil.which("crysplugins")
    if found:
        return [str(Path(found).absolute())]
    return [str(Path(sys.executable).absolute()), "-m", "crysplugins.cli"]


def script_source() -> str:
    """The text of the Coot script shipped in the package."""
    return resources.files("crysplugins.coot_scripts").joinpath(SCRIPT_NAME).read_text(encoding="utf-8")


def baked_script(command: list[str]) -> str:
    """The Coot script with ``command`` written into its ``CRYSPLUGINS_COMMAND`` line."""
    text = script_source()
    if text.count(COMMAND_LINE) != 1:
        raise CrysError(f"The packaged {SCRIPT_NAME} has no single '{COMMAND_LINE}' line; reinstall crysplugins.")
    baked = text.replace(COMMAND_LINE, f"CRYSPLUGINS_COMMAND = {json.dumps(command)}")
    return f"{MARKER} from {sys.executable}\n" + baked


def install(dirs: list[Path], command: list[str], dry_run: bool = False) -> list[Path]:
    """Write the script into each folder (created if missing); returns the paths written."""
    text = baked_script(command)
    written = []
    for folder in dirs:
        dest = folder / SCRIPT_NAME
        if dest.exists() and MARKER not in dest.read_text(errors="replace")[:200]:
            raise CrysError(f"{dest} exists and was not written by crysplugins coot-install; move it away first.")
        if dry_run:
            print(f"would write {dest} (runs {' '.join(command)})")
            continue
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with atomic_path(dest) as tmp:
                tmp.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise CrysError(f"Could not write {dest}: {exc.strerror or exc}.") from None
        print(f"wrote {dest}")
        written.append(dest)
    return written


def uninstall(dirs: list[Path], dry_run: bool = False) -> list[Path]:
    """Remove the script from each folder where this command put it; returns the paths removed."""
    removed = []
    for folder in dirs:
        dest = folder / SCRIPT_NAME
        if not dest.exists():
            continue
        if MARKER not in dest.read_text(errors="replace")[:200]:
            print(f"left {dest}: it was not written by crysplugins coot-install")
            continue
        if dry_run:
            print(f"would remove {dest}")
            continue
        dest.unlink()
        print(f"removed {dest}")
        removed.append(dest)
    return removed


def run(args: argparse.Namespace) -> int:
    dirs = [Path(d).expanduser() for d in args.coot_dir] if args.coot_dir else default_coot_dirs()
    if args.uninstall:
        removed = uninstall(dirs, args.dry_run)
        if not removed and not args.dry_run:
            print("nothing to remove")
        return 0
    command = shlex.split(args.command) if args.command else find_command()
    install(dirs, command, args.dry_run)
    if not args.dry_run:
        print("Start Coot: the 'crysplugins' menu appears once the predictor list has loaded.")
    return 0


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("coot-install", help="install the crysplugins menu into Coot",
                       description="Copy the crysplugins Coot script into Coot's start-up folders "
                                   "(~/.config/Coot for Coot 1.x, ~/.coot-preferences for Coot 0.9), "
                                   "pointing it at this installation's crysplugins command.")
    p.add_argument("--coot-dir", action="append", default=[], metavar="DIR",
                   help="folder to install into (repeatable; default: ~/.config/Coot and ~/.coot-preferences)")
    p.add_argument("--dry-run", action="store_true", help="only print what would be written or removed")
    p.add_argument("--uninstall", action="store_true", help="remove the script written by this command")
    p.add_argument("--command", default=None, metavar="CMD",
                   help="the crysplugins command to run from Coot (default: this installation's)")
    p.set_defaults(func=run)
    return p
