"""Run a predictor off the GUI thread: a ``QRunnable`` for a ``QThreadPool`` that reports through signals.

The worker goes the command line's way, :mod:`crysplugins.request`: it loads the raw input values (file
paths are read here, not on the GUI thread), fills in defaults, checks the request and runs the
predictor.  Progress from ``Request.progress`` is forwarded as a Qt signal (queued to the GUI thread),
at most every 50 ms or 0.5 % so that a chatty predictor cannot flood the event loop.  ``cancel()`` sets the request's
:class:`~crysplugins.interface.CancelToken`; the predictor stops at its next ``request.report`` or
``check_cancelled`` and the worker emits ``cancelled``.  Exactly one of ``finished``, ``failed``,
``cancelled`` is emitted, then ``done``.
"""
from __future__ import annotations

import time
import traceback
from dataclasses import dataclass
from typing import Any

from PyQt6.QtCore import QObject, QRunnable, pyqtSignal

from crysplugins.errors import Cancelled, CrysError
from crysplugins.interface import CancelToken, InputSpec
from crysplugins.request import load_request_inputs, run_prediction


@dataclass
class RawInput:
    """One value from the form: an object already loaded, or a string (a path, a number) to load."""

    spec: InputSpec
    value: Any
    columns: dict[str, str] | None = None


class WorkerSignals(QObject):
    """Signals of a :class:`PredictionWorker` (a QRunnable cannot emit signals itself)."""

    progress = pyqtSignal(float, str)        # fraction 0..1, message
    finished = pyqtSignal(object)            # Prediction
    failed = pyqtSignal(str, str)            # one-sentence message, details (traceback for unexpected errors)
    cancelled = pyqtSignal()
    done = pyqtSignal()


class PredictionWorker(QRunnable):
    """Loads the inputs and runs ``predictor.predict`` on a pool thread."""

    def __init__(self, predictor: Any, raw: dict[str, RawInput], min_interval_s: float = 0.05) -> None:
        super().__init__()
        self.setAutoDelete(False)  # the panel keeps a reference until ``done``
        self.predictor = predictor
        self.raw = raw
        self.token = CancelToken()
        self.signals = WorkerSignals()
        self.min_interval_s = min_interval_s
        self._last = (-1.0, 0.0)
        self.seconds = 0.0

    def cancel(self) -> None:
        self.token.cancel()

    def _progress(self, fraction: float, message: str) -> None:
        last_fraction, last_time = self._last
        now = time.monotonic()
        if fraction >= 1.0 or fraction - last_fraction >= 0.005 or now - last_time >= self.min_interval_s:
            self._last = (fraction, now)
            self.signals.progress.emit(float(fraction), str(message))

    def run(self) -> None:  # executed on a pool thread
        t0 = time.monotonic()
        try:
            values = {name: item.value for name, item in self.raw.items()}
            columns = {name: item.columns for name, item in self.raw.items() if item.columns}
            inputs = load_request_inputs(self.predictor, values, columns)
            self.token_check()
            prediction = run_prediction(self.predictor, inputs, progress=self._progress, cancel=self.token)
            self.seconds = time.monotonic() - t0
            self.signals.finished.emit(prediction)
        except Cancelled:
            self.seconds = time.monotonic() - t0
            self.signals.cancelled.emit()
        except CrysError as exc:
            self.seconds = time.monotonic() - t0
            self.signals.failed.emit(str(exc), "")
        except Exception as exc:  # a bug in a predictor must not take the window down
            self.seconds = time.monotonic() - t0
            self.signals.failed.emit(f"{self.predictor.name} failed: {type(exc).__name__}: {exc}",
                                     traceback.format_exc())
        finally:
            self.signals.done.emit()

    def token_check(self) -> None:
        if self.token.cancelled:
            raise Cancelled("The prediction was cancelled.")
