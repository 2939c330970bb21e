"""Run the Coot script under another Python with a real GLib main loop (like Coot's embedded Python).

Usage: PYTHON glib_driver.py SCRIPT MAP RESULT_JSON

This Python needs only the standard library and PyGObject (``gi``): crysplugins is NOT importable here,
exactly as in Coot, so the script can only reach crysplugins through its child process.  The Coot
modules are the recording stand-ins of fake_coot.py; the timeouts are real ``GLib.timeout_add`` calls
served by a ``GLib.MainLoop``.  A 20 ms heartbeat timeout counts main-loop iterations while the
prediction runs: a GUI that stayed responsive keeps ticking.  Writes a JSON summary to RESULT_JSON.
"""
import importlib.util
import json
import os
import runpy
import sys
import time

from gi.repository import GLib

HERE = os.path.dirname(os.path.abspath(__file__))


class SetItem:
    """The one monkeypatch method install_modules needs."""

    def setitem(self, mapping, key, value):
        mapping[key] = value


def main(script, map_path, result_path):
    spec = importlib.util.spec_from_file_location("fake_coot", os.path.join(HERE, "fake_coot.py"))
    fake = importlib.util.module_from_spec(spec)
    sys.modules["fake_coot"] = fake
    spec.loader.exec_module(fake)
    rec = fake.Recorder()
    coot = fake.FakeCoot(rec)
    coot.refinement_map = coot.add_map(map_path)
    fake.install_modules(SetItem(), "1", coot, rec, real_glib=True)
    loop = GLib.MainLoop()
    state = {"ticks_during_job": 0, "job": None, "t0": None, "t_done": None}
    try:
        import crysplugins  # noqa: F401
        state["crysplugins_importable"] = True
    except ImportError:
        state["crysplugins_importable"] = False

    app = runpy.run_path(script, run_name="crysplugins_coot_glib")["crysplugins_coot"]

    def heartbeat():
        job = state["job"]
        if job is not None and not job.finished:
            state["ticks_during_job"] += 1
        return True

    def step():
        if state["job"] is None and app.menu_names:  # the list arrived: press the menu item
            state["t0"] = time.monotonic()
            state["job"] = rec.activate("crysplugins", "coot-test-normalise...")
            state["activate_s"] = time.monotonic() - state["t0"]
        elif state["job"] is not None and state["job"].finished and rec.dialogs:
            state["t_done"] = time.monotonic()
            loop.quit()
            return False
        return True

    GLib.timeout_add(20, heartbeat)
    GLib.timeout_add(50, step)
    GLib.timeout_add(60000, loop.quit)
    loop.run()
    job = state["job"]
    summary = {
        "crysplugins_importable": state["crysplugins_importable"],
        "python": sys.version.split()[0],
        "timer": "%s.%s" % (app.timer.__module__, getattr(app.timer, "__name__", "")),
        "menu": rec.menus["crysplugins"].labels() if "crysplugins" in rec.menus else [],
        "argv": job.argv if job else None,
        "returncode": job.returncode if job else None,
        "activate_s": state.get("activate_s"),
        "job_s": (state["t_done"] - state["t0"]) if state["t_done"] else None,
        "ticks_during_job": state["ticks_during_job"],
        "read_ccp4_map": rec.called("read_ccp4_map"),
        "dialogs": rec.dialogs,
    }
    with open(result_path, "w") as handle:
        json.dump(summary, handle, indent=2)


if __name__ == "__main__":
    main(*sys.argv[1:4])
