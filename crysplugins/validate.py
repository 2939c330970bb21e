"""Checks of user values shared by every command: numbers that must be finite, folders that must be writable.

Each check raises :class:`~crysplugins.errors.CrysError` with one sentence naming the option, so the
command line, the GUI and evaluation refuse the same values in the same words.  ``float('nan')`` passes
every ``<`` and ``>`` comparison unnoticed, hence :func:`finite_float` before any range check.
"""
from __future__ import annotations

import argparse
import errno
import math
import os
from pathlib import Path

from crysplugins.errors import CrysError


def finite_float(text: str | float, what: str = "the value", minimum: float | None = None,
                 maximum: float | None = None, unit: str = "") -> float:
    """``text`` as a finite float within [minimum, maximum]; NaN and infinities are refused."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise CrysError(f"{what} must be a number, not '{text}'.") from None
    if not math.isfinite(value):
        raise CrysError(f"{what} must be a finite number, not '{text}'.")
    suffix = f" {unit}" if unit else ""
    if minimum is not None and value < minimum:
        raise CrysError(f"{what} must be at least {minimum:g}{suffix}, not {text}.")
    if maximum is not None and value > maximum:
        raise CrysError(f"{what} must be at most {maximum:g}{suffix}, not {text}.")
    return value


def finite_int(text: str | int, what: str = "the value", minimum: int | None = None,
               maximum: int | None = None) -> int:
    """``text`` as a whole number within [minimum, maximum]."""
    try:
        value = int(str(text).strip())
    except ValueError:
        raise CrysError(f"{what} must be a whole number, not '{text}'.") from None
    if minimum is not None and value < minimum:
        raise CrysError(f"{what} must be at least {minimum}, not {text}.")
    if maximum is not None and value > maximum:
        raise CrysError(f"{what} must be at most {maximum}, not {text}.")
    return value


def argparse_finite_float(text: str) -> float:
    """An argparse ``type=``: a finite float (argparse turns the error into its usage message)."""
    try:
        return finite_float(text)
    except CrysError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a finite number") from None


def writable_folder(path: str | os.PathLike, what: str = "The output folder") -> Path:
    """Create ``path`` (and parents) if needed; refuse a path that is a file or cannot be written to."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise CrysError(f"{what} {p} is a file, not a folder.")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CrysError(f"{what} {p} cannot be created ({os_reason(exc)}).") from None
    if not os.access(p, os.W_OK | os.X_OK):
        raise CrysError(f"{what} {p} is not writable.")
    return p


def os_reason(exc: OSError) -> str:
    """A short reason for an OSError: 'No space left on device', 'File too large'..."""
    if exc.errno is not None and exc.errno in errno.errorcode:
        return exc.strerror or os.strerror(exc.errno)
    return str(exc) or type(exc).__name__


def exists_quietly(path: str) -> bool:
    """``os.path.exists`` that is False for strings no file can have (too long, NUL bytes)."""
    try:
        return os.path.exists(path)
    except (OSError, ValueError):
        return False


def check_output_folder(path: str | os.PathLike, what: str = "The output folder") -> Path:
    """Refuse, before any work is done, an output folder that is a file or cannot be written; nothing is
    created (the writers make the folder when they have something to write)."""
    p = Path(path)
    try:
        if p.exists() and not p.is_dir():
            raise CrysError(f"{what} {p} is a file, not a folder.")
        existing = p
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir():
            raise CrysError(f"{what} {p} cannot be created: {existing} is a file.")
    except OSError as exc:
        raise CrysError(f"{what} {str(p)[:80]} cannot be used ({os_reason(exc)}).") from None
    if not os.access(existing, os.W_OK | os.X_OK):
        raise CrysError(f"{what} {p} is not writable (permission denied on {existing}).")
    return p
