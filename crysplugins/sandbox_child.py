"""The child side of :mod:`crysplugins.sandbox`: runs one plugin request in its own process.

The parent starts ``python -c "from crysplugins.sandbox_child import main; ..." FD``, writes one pickled
request on stdin and reads pickled messages from file descriptor FD: ``start``/``done``/``finished`` while
discovering entry points, ``loaded``/``progress``/``result`` (or ``refused``/``failed``) for a call.  Plugin
code runs only here; a plugin's prints go to stderr, never into the messages.
"""
from __future__ import annotations

import os
import pickle
import sys
import traceback
from importlib.metadata import EntryPoint
from typing import Any

from crysplugins.errors import Cancelled, CrysError
from crysplugins.host import Host
from crysplugins.interface import Request
from crysplugins.sandbox import ENTRY_POINT_GROUP, dumps, write_message


def _load_plugin_host(name: str, value: str):
    """A host holding only this entry point's plugin (in the child); raises on import failure."""
    plugin = EntryPoint(name, value, ENTRY_POINT_GROUP).load()
    return Host(autoload=False, only=(), extra_plugins=[(name, plugin)], isolate=False)


def _describe_predictor(p: Any) -> dict:
    desc = {"name": p.name, "version": p.version, "summary": p.summary, "inputs": tuple(p.inputs),
            "outputs": tuple(p.outputs), "origin_arbitrary": bool(getattr(p, "origin_arbitrary", False)),
            "has_example_inputs": callable(getattr(p, "example_inputs", None))}
    card_fn = getattr(p, "model_card", None)
    if callable(card_fn):
        desc["model_card"] = card_fn()
    dumps(desc)  # fails here, in the child, if the declarations cannot cross the process boundary
    return desc


def _inspect(name: str, value: str) -> dict:
    try:
        host = _load_plugin_host(name, value)
    except BaseException as exc:  # SystemExit too: an import that calls sys.exit is a failed import
        return {"errors": [f"import failed: {type(exc).__name__}: {exc}"]}
    report: dict = {"errors": [f.error for f in host.failures], "predictors": [], "refiners": []}
    for entry in host.predictors.values():
        try:
            report["predictors"].append(_describe_predictor(entry.predictor))
        except Exception as exc:
            report["errors"].append(f"invalid predictor {entry.predictor.name!r}: {type(exc).__name__}: {exc}")
    for rname, entry in host.refiners.items():
        report["refiners"].append({"name": rname, "summary": str(getattr(entry.refiner, "summary", ""))})
    return report


def _child_discover(fd: int, request: dict) -> None:
    for name, value in request["entry_points"]:
        write_message(fd, ("start", name))
        write_message(fd, ("done", name, _inspect(name, value)))
    write_message(fd, ("finished",))


def _child_call(fd: int, request: dict) -> None:
    name, value = request["entry_point"]
    kind, target = request["target"]
    host = _load_plugin_host(name, value)
    obj = host.predictors[target].predictor if kind == "predictor" else host.refiners[target].refiner
    write_message(fd, ("loaded",))  # the call's time limit starts now
    if request["method"] == "predict":
        inputs, refiners = request["args"]
        req = Request(inputs=inputs, refiners=refiners,
                      progress=lambda f, m: write_message(fd, ("progress", f, str(m))))
        result = obj.predict(req)
    else:
        result = getattr(obj, request["method"])(*request["args"], **request["kwargs"])
    write_message(fd, ("result", result))


def main(argv: list[str]) -> int:
    """The child: read one request (pickle) from stdin, answer on the file descriptor in argv[0]."""
    fd = int(argv[0])
    os.dup2(2, 1)  # a plugin's prints must not reach the messages or the parent's stdout
    request = pickle.loads(sys.stdin.buffer.read())
    sys.path[:] = request["sys_path"]
    try:
        if request["op"] == "discover":
            _child_discover(fd, request)
        else:
            _child_call(fd, request)
    except Cancelled as exc:
        write_message(fd, ("refused", str(exc), True))
    except CrysError as exc:
        write_message(fd, ("refused", str(exc), False))
    except BaseException as exc:  # reported to the parent as the plugin's failure
        write_message(fd, ("failed", f"{type(exc).__name__}: {exc}", traceback.format_exc()))
    return 0


