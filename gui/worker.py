"""Run a predictor off the GUI thread: a ``QRunnable`` for a ``QThreadPool`` that reports through signals.

The worker loads the raw input values with :func:`crysplugins.inputs.load_input` (file paths are read
here, not on the GUI thread), checks the request, and calls ``predictor.predict(Request)``.  Progress
from ``Request.progress`` is forwarded as a Qt signal (queued to the GUI thread), at most every 50 ms or
0.5 % so that a chatty predictor cannot flood the event loop.  ``cancel()`` sets the request's
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
from crysplugins.inputs import load_input
from crysplugins.interface import CancelToken, InputSpec, Prediction, Request, check_request


@dataclass
class RawInput:
    """One value from the form: an object already loaded, or a string for ``load_input``."""

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


def load_raw_inputs(predictor: Any, raw: dict[str, RawInput]) -> dict[str, Any]:
    """Load every given value (defaults for the rest) and check the request: the CLI's rules."""
    inputs: dict[str, Any] = {}
    for spec in predictor.inputs:
        item = raw.get(spec.name)
        value = load_input(spec, item.value, item.columns) if item is not None else None
        if value is None and spec.default is not None:
            default = spec.default
            value = load_input(spec, str(default)) if isinstance(default, (int, float, str)) and not isinstance(default, bool) else default
        if value is not None:
            inputs[spec.name] = value
    check_request(predictor, inputs)
    return inputs


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
            inputs = load_raw_inputs(self.predictor, self.raw)
            self.token_check()
            request = Request(inputs=inputs, progress=self._progress, cancel=self.token)
            prediction = self.predictor.predict(request)
            if not isinstance(prediction, Prediction):
                raise CrysError(f"{self.predictor.name} returned {type(prediction).__name__}, not a Prediction.")
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
