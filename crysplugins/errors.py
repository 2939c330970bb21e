"""Errors a user can cause.  Each carries one clear sentence; the CLI prints it and exits non-zero."""
from __future__ import annotations


class CrysError(Exception):
    """A user-facing error: the message is one sentence that says what is wrong (and how to fix it)."""

    exit_code = 2


class Cancelled(CrysError):
    """The caller cancelled a running prediction."""

    exit_code = 130
