"""Third-party plugin code runs in a child process, so that a plugin cannot take the host down.

The host (:mod:`crysplugins.host`) never imports a third-party entry point itself.  Instead

* **discovery** imports the entry points in a child process (:mod:`crysplugins.sandbox_child`) one after the
  other; the child reports each plugin's predictors and refiners as plain descriptions.  A plugin whose
  import takes longer than the import time limit, or that ends the child (``os._exit``, a signal), is
  recorded as a failure and the remaining plugins are imported in a fresh child;
* **every call** into a third-party predictor or refiner (``predict``, ``example_inputs``, ``refine``)
  runs in a fresh child with a time limit; progress messages come back while it runs, cancelling kills
  the child, and a call that raises, exits or hangs ends in one sentence naming the plugin and its
  distribution (a :class:`~crysplugins.errors.CrysError`).

Built-in plugins run in-process (they are part of this package).  Crystal objects cross the process
boundary by pickle; ``gemmi.FloatGrid`` and ``gemmi.Mtz`` do not pickle, so :func:`dumps` reduces them to
an array + cell + space group and to MTZ bytes.

Environment variables (seconds): ``CRYSPLUGINS_PLUGIN_IMPORT_TIMEOUT`` (default 30, per plugin),
``CRYSPLUGINS_PLUGIN_TIMEOUT`` (default 3600, per call; 0 means no limit).
``CRYSPLUGINS_PLUGIN_ISOLATION=0`` loads and runs third-party plugins in the host process instead.
"""
from __future__ import annotations

import copyreg
import io as _bytes_io
import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import gemmi
import numpy as np

from crysplugins.errors import Cancelled, CrysError

ENV_ISOLATION = "CRYSPLUGINS_PLUGIN_ISOLATION"
ENV_IMPORT_TIMEOUT = "CRYSPLUGINS_PLUGIN_IMPORT_TIMEOUT"
ENV_CALL_TIMEOUT = "CRYSPLUGINS_PLUGIN_TIMEOUT"
ENTRY_POINT_GROUP = "crysplugins"
_POLL_S = 0.1  # how often a waiting parent looks at the cancel token
_STARTUP_S = 60.0  # allowance for a child's Python start-up on a busy machine, beyond any time limit
# the child imports its module by name (not as __main__) so that pickles refer to importable names
_CHILD = "import sys; from crysplugins.sandbox_child import main; sys.exit(main(sys.argv[1:]))"


def isolation_enabled() -> bool:
    return os.environ.get(ENV_ISOLATION, "").strip().lower() not in ("0", "false", "no", "off")


def _seconds(env: str, default: float) -> float:
    try:
        value = float(os.environ.get(env, "") or default)
    except ValueError:
        raise CrysError(f"{env} must be a number of seconds, not '{os.environ[env]}'.") from None
    if not np.isfinite(value) or value < 0:
        raise CrysError(f"{env} must be a number of seconds (0 for no limit), not '{os.environ[env]}'.")
    return value


def import_timeout() -> float:
    return _seconds(ENV_IMPORT_TIMEOUT, 30.0) or float("inf")


def call_timeout() -> float:
    return _seconds(ENV_CALL_TIMEOUT, 3600.0) or float("inf")


# ------------------------------------------------------------------------------------------ pickling

def _grid_from(array: np.ndarray, cell: tuple, spacegroup: str) -> gemmi.FloatGrid:
    grid = gemmi.FloatGrid(np.ascontiguousarray(array, dtype=np.float32), gemmi.UnitCell(*cell))
    grid.spacegroup = gemmi.SpaceGroup(spacegroup)
    return grid


def _reduce_grid(grid: gemmi.FloatGrid):
    c = grid.unit_cell
    sg = grid.spacegroup.xhm() if grid.spacegroup else "P 1"
    return _grid_from, (np.array(grid, copy=True), (c.a, c.b, c.c, c.alpha, c.beta, c.gamma), sg)


def _mtz_from(data: bytes) -> gemmi.Mtz:
    # gemmi reads MTZ from a path only
    fd, name = tempfile.mkstemp(suffix=".mtz")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        return gemmi.read_mtz_file(name)
    finally:
        os.unlink(name)


def _reduce_mtz(mtz: gemmi.Mtz):
    return _mtz_from, (bytes(mtz.write_to_bytes()),)


_DISPATCH = copyreg.dispatch_table.copy()
_DISPATCH[gemmi.FloatGrid] = _reduce_grid
_DISPATCH[gemmi.Mtz] = _reduce_mtz


def dumps(obj: Any) -> bytes:
    """Pickle ``obj``; gemmi grids and MTZ objects inside it are carried as arrays and MTZ bytes."""
    buffer = _bytes_io.BytesIO()
    pickler = pickle.Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL)
    pickler.dispatch_table = _DISPATCH
    pickler.dump(obj)
    return buffer.getvalue()


#: top-level modules whose classes may come back from a plugin's child: the host never imports the
#: plugin's own modules while unpickling its answer (an import could hang or crash the host)
SAFE_MODULES = frozenset({"crysplugins", "gemmi", "numpy", "builtins", "collections", "datetime", "pathlib",
                          "enum", "copyreg", "_codecs", "math", "fractions", "decimal"})


class _HostUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module.split(".")[0] not in SAFE_MODULES:
            raise pickle.UnpicklingError(f"an object of {module}.{name}, which the host does not load")
        return super().find_class(module, name)


def loads_from_plugin(data: bytes) -> Any:
    """Unpickle a child's answer, refusing classes outside :data:`SAFE_MODULES`."""
    return _HostUnpickler(_bytes_io.BytesIO(data)).load()


# ------------------------------------------------------------------------------------------ messages

def write_message(fd: int, obj: Any) -> None:
    payload = dumps(obj)
    data = struct.pack("<Q", len(payload)) + payload
    while data:
        data = data[os.write(fd, data):]


class _Timeout(Exception):
    pass


@dataclass
class _Child:
    """One child process: a request on its stdin, messages back on a dedicated pipe."""

    request: dict
    proc: subprocess.Popen = field(init=False)
    fd: int = field(init=False)
    _buffer: bytes = field(default=b"", init=False)

    def __post_init__(self) -> None:
        read_fd, write_fd = os.pipe()
        try:
            self.proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(write_fd)],
                                         stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                         pass_fds=(write_fd,), start_new_session=True)
        except OSError as exc:
            os.close(read_fd)
            raise CrysError(f"Could not start a process for a plugin ({exc.strerror or exc}).") from None
        finally:
            os.close(write_fd)
        self.fd = read_fd
        try:
            self.proc.stdin.write(dumps(dict(self.request, sys_path=list(sys.path))))
            self.proc.stdin.close()
        except BrokenPipeError:
            pass  # the child is gone already; receive() reports how it ended

    def receive(self, timeout: float) -> Any | None:
        """The next message; None when the child closed its end (it ended); _Timeout after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while True:
            if len(self._buffer) >= 8:
                size = struct.unpack("<Q", self._buffer[:8])[0]
                if len(self._buffer) >= 8 + size:
                    payload, self._buffer = self._buffer[8:8 + size], self._buffer[8 + size:]
                    return loads_from_plugin(payload)
            left = deadline - time.monotonic()
            if left <= 0:
                raise _Timeout()
            ready, _, _ = select.select([self.fd], [], [], min(left, 3600.0))
            if ready:
                chunk = os.read(self.fd, 1 << 20)
                if not chunk:
                    return None
                self._buffer += chunk

    def how_it_ended(self) -> str:
        code = self.proc.wait()
        if code < 0:
            try:
                return f"killed by signal {signal.Signals(-code).name}"
            except ValueError:
                return f"killed by signal {-code}"
        return f"exit code {code}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)  # the plugin's own children too
            except (ProcessLookupError, PermissionError):
                self.proc.kill()
        self.proc.wait()
        os.close(self.fd)
        self.fd = -1


# ------------------------------------------------------------------------------------------ discovery

@dataclass
class PluginReport:
    """What discovery learnt about one entry point: errors, or descriptions of what it registers."""

    plugin: str
    distribution: str
    value: str
    errors: list[str] = field(default_factory=list)
    predictors: list[dict] = field(default_factory=list)
    refiners: list[dict] = field(default_factory=list)


def discover(entry_points: list[tuple[str, str, str]], timeout: float | None = None) -> list[PluginReport]:
    """Import ``(name, value, distribution)`` entry points in child processes, ``timeout`` s each."""
    timeout = import_timeout() if timeout is None else timeout
    reports: dict[str, PluginReport] = {}
    todo = list(entry_points)
    while todo:
        child = _Child({"op": "discover", "entry_points": [(n, v) for n, v, _ in todo]})
        current = None
        try:
            while True:
                # the time limit covers one import; the child's own start-up gets a generous allowance
                msg = child.receive(timeout if current is not None else timeout + _STARTUP_S)
                if msg is None or msg[0] == "finished":
                    break
                if msg[0] == "start":
                    current = msg[1]
                elif msg[0] == "done":
                    name, report = msg[1], msg[2]
                    reports[name] = PluginReport(name, "", "", **report)
                    current = None
            ended = None if msg is not None else child.how_it_ended()
        except _Timeout:
            ended = f"its import did not finish in {timeout:g} s"
        except (pickle.UnpicklingError, AttributeError, ImportError, EOFError) as exc:
            ended = f"what it declares holds {_sentence(str(exc))}"
        finally:
            child.stop()
        if ended is not None:
            culprit = current or next(n for n, _, _ in todo if n not in reports)
            if ended.startswith(("exit", "killed")):
                ended = f"importing it ended the process ({ended})"
            reports[culprit] = PluginReport(culprit, "", "", errors=[ended])
        todo = [ep for ep in todo if ep[0] not in reports]
    out = []
    for name, value, dist in entry_points:
        report = reports[name]
        report.distribution, report.value = dist, value
        out.append(report)
    return out


# ------------------------------------------------------------------------------------------ proxies

def call(plugin: str, distribution: str, value: str, target: tuple[str, str], method: str, args: tuple = (),
         kwargs: dict | None = None, progress: Callable[[float, str], None] | None = None,
         cancel: Any = None, timeout: float | None = None) -> Any:
    """Call ``method`` of the predictor or refiner ``target`` = (kind, name) of a plugin in a child.

    The plugin's own CrysError passes through; anything else that goes wrong becomes one sentence naming
    the plugin and its distribution.  ``timeout`` (s) counts from the moment the child has loaded the
    plugin; loading gets the import time limit plus a start-up allowance.
    """
    timeout = call_timeout() if timeout is None else timeout
    loading = import_timeout() + _STARTUP_S
    what = f"{target[1]}.{method}"
    who = f"The plugin {plugin} ({distribution})"
    child = _Child({"op": "call", "entry_point": (plugin, value), "target": target, "method": method,
                    "args": args, "kwargs": kwargs or {}})
    deadline, loaded = time.monotonic() + loading, False
    try:
        while True:
            if cancel is not None and cancel.cancelled:
                raise Cancelled("The prediction was cancelled.")
            left = deadline - time.monotonic()
            if left <= 0 and not loaded:
                raise CrysError(f"{who} could not be loaded for {what} within {loading:g} s and was stopped.")
            if left <= 0:
                raise CrysError(f"{who} did not finish {what} in {timeout:g} s and was stopped "
                                f"(set {ENV_CALL_TIMEOUT} to allow longer).")
            try:
                msg = child.receive(min(left, _POLL_S))
            except _Timeout:
                continue
            except (pickle.UnpicklingError, AttributeError, ImportError, EOFError) as exc:
                raise CrysError(f"{who} returned from {what} {_sentence(str(exc))}, which cannot be used.") from None
            if msg is None:
                raise CrysError(f"{who} ended its process during {what} ({child.how_it_ended()}).")
            kind = msg[0]
            if kind == "loaded":
                deadline, loaded = time.monotonic() + timeout, True
            elif kind == "progress" and progress is not None:
                progress(msg[1], msg[2])
            elif kind == "result":
                return msg[1]
            elif kind == "refused":
                raise (Cancelled if msg[2] else CrysError)(msg[1])
            elif kind == "failed":
                raise CrysError(f"{who} failed in {what}: {_sentence(msg[1])}.")
    finally:
        child.stop()


def _sentence(text: str) -> str:
    first = (text.strip().splitlines() or [""])[0][:300]
    return first.rstrip(".")


class PredictorProxy:
    """A third-party predictor seen from the host: its declared attributes, and methods that run in a child."""

    def __init__(self, desc: dict, plugin: str, distribution: str, value: str) -> None:
        self.name, self.version, self.summary = desc["name"], desc["version"], desc["summary"]
        self.inputs, self.outputs = tuple(desc["inputs"]), tuple(desc["outputs"])
        self.origin_arbitrary = bool(desc.get("origin_arbitrary", False))
        self._where = (plugin, distribution, value)
        if desc.get("has_example_inputs"):
            self.example_inputs = self._example_inputs
        if "model_card" in desc:
            card = desc["model_card"]
            self.model_card = lambda: card

    def predict(self, request: Any) -> Any:
        refiners = {}
        for name, refiner in (getattr(request, "refiners", None) or {}).items():
            try:
                dumps(refiner)
                refiners[name] = refiner
            except Exception:  # a refiner that cannot cross the process boundary is left out
                pass
        return call(*self._where, ("predictor", self.name), "predict", (request.inputs, refiners),
                    progress=request.progress, cancel=request.cancel)

    def _example_inputs(self) -> dict:
        return call(*self._where, ("predictor", self.name), "example_inputs")

    def __repr__(self) -> str:
        return f"<PredictorProxy {self.name} from {self._where[0]} ({self._where[1]})>"


class RefinerProxy:
    """A third-party refiner seen from the host; ``refine`` runs in a child."""

    def __init__(self, desc: dict, plugin: str, distribution: str, value: str) -> None:
        self.name, self.summary = desc["name"], desc.get("summary", "")
        self._where = (plugin, distribution, value)

    def refine(self, *args: Any, **kwargs: Any) -> Any:
        return call(*self._where, ("refiner", self.name), "refine", args, kwargs)
