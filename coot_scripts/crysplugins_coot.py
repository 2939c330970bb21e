# -*- coding: utf-8 -*-
"""crysplugins menu for Coot: run the installed crysplugins predictors on the map loaded in Coot.

Drop this file into Coot's start-up scripts folder (``~/.config/Coot/`` for Coot 1.x, 1.1.10 and later;
``~/.coot-preferences/`` for Coot 0.9), run ``crysplugins coot-install`` (which also records where the
``crysplugins`` command lives), or start Coot with ``coot --script crysplugins_coot.py``.

What it does:

* adds a "crysplugins" menu: in Coot 1.x (GTK4) a module menu button with Gio actions named
  ``crysplugins-...`` (``coot_gui.attach_module_menu_button`` + ``coot_gui.add_simple_action_to_menu``);
  in Coot 0.9 a menubar menu (``coot_menubar_menu`` + ``add_simple_coot_menu_menuitem``);
* fills it from ``crysplugins list --json``: one item per predictor that takes a map or reflections, so
  third-party predictors appear as soon as they are installed;
* an item exports the refinement map (``coot.export_map``) into a fresh temporary folder, or passes the
  MTZ file the map was calculated from (``mtz_hklin_for_map``) to predictors that read reflections, runs
  ``crysplugins predict NAME ... --out DIR --json`` as a child process, polls it from the GUI main loop
  (``GLib.timeout_add``; ``gobject.timeout_add`` in Coot 0.9) so Coot never freezes, then reads each map
  the predictor wrote with ``read_ccp4_map``, names it, contours it (masks and probability maps at 0.5
  absolute, other maps at 1 rmsd) and shows the numbers the predictor returned (solvent content, scores) in an info dialog and
  the status bar.  A failing run shows the command's one-sentence error in an info dialog.

Only the standard library and Coot's own modules are imported here (this file also runs under the
Python 2.7 of some Coot 0.9 builds); all crystallography runs in the ``crysplugins`` command.

Environment variables: ``CRYSPLUGINS_COMMAND`` (the command to run, e.g. ``/opt/venv/bin/crysplugins``;
overrides the path baked in by ``crysplugins coot-install``), ``CRYSPLUGINS_PYTHONPATH`` (PYTHONPATH for
the child; Coot's own PYTHONHOME/PYTHONPATH are never passed on, they would break another Python).
"""
from __future__ import print_function

import atexit
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

#: The command that runs crysplugins, as a list of arguments.  ``crysplugins coot-install`` replaces
#: this line with the absolute path of the ``crysplugins`` executable of the environment it ran in.
CRYSPLUGINS_COMMAND = None

CRYSPLUGINS_MENU_LABEL = "crysplugins"
CRYSPLUGINS_ACTION_PREFIX = "crysplugins-"
CRYSPLUGINS_POLL_MS = 250
#: how often to retry adding the menu when Coot's window is not ready yet (once a second)
CRYSPLUGINS_MENU_RETRIES = 10
#: contour levels for maps read back: masks (values 0/1) at an absolute level, other maps in rmsd units
CRYSPLUGINS_MASK_LEVEL = 0.5
CRYSPLUGINS_MAP_LEVEL_SIGMA = 1.0
#: map units of outputs that hold a probability or a 0/1 mask (contoured at CRYSPLUGINS_MASK_LEVEL)
CRYSPLUGINS_FRACTION_UNITS = ("P(", "probability", "=1", "fraction")
#: the input kinds that make a predictor appear in the menu
CRYSPLUGINS_MENU_KINDS = ("map", "reflections")
#: map inputs whose name holds one of these words take a special map, never the density map shown in Coot
CRYSPLUGINS_SPECIAL_MAP_WORDS = ("patterson", "mask", "difference")
#: prediction folders kept per Coot session (older ones are removed when a new prediction starts)
CRYSPLUGINS_KEEP_RUNS = 5
#: leftover session folders of Coot sessions that ended without cleaning up are removed after this (s)
CRYSPLUGINS_STALE_SECONDS = 2 * 24 * 3600
CRYSPLUGINS_SESSION_PREFIX = "crysplugins-coot-session-"
#: column labels that hold map coefficients, not observed amplitudes
CRYSPLUGINS_MAP_COEFF_LABELS = ("FWT", "DELFWT", "2FOFCWT", "FOFCWT", "FC", "FC_ALL", "FCALC",
                                "FWT_ALL", "DELFWT_ALL", "PARTIAL_FWT")
CRYSPLUGINS_ONE_LETTER = {
    "ALA": "A", "ARG": "R", "ASN": "N", "ASP": "D", "CYS": "C", "GLN": "Q", "GLU": "E", "GLY": "G",
    "HIS": "H", "ILE": "I", "LEU": "L", "LYS": "K", "MET": "M", "PHE": "F", "PRO": "P", "SER": "S",
    "THR": "T", "TRP": "W", "TYR": "Y", "VAL": "V", "MSE": "M",
}


def _crysplugins_import(name):
    """The module ``name`` or None (Coot's modules differ between generations)."""
    try:
        return __import__(name)
    except Exception:
        return None


def _crysplugins_which(program):
    """shutil.which for Python 2 and 3."""
    try:
        from shutil import which
        return which(program)
    except ImportError:  # Python 2
        for folder in os.environ.get("PATH", "").split(os.pathsep):
            candidate = os.path.join(folder, program)
            if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
                return candidate
    return None


def _crysplugins_say(text):
    """Print to Coot's terminal; never fail on a terminal that cannot encode the text (Python 2)."""
    try:
        print(text)
    except UnicodeError:
        print(text.encode("ascii", "replace").decode("ascii"))


def crysplugins_action_key(name, taken):
    """A Gio action-name fragment for ``name``: GTK allows only letters, digits, '-' and '.', so every
    other character becomes '-'; a suffix keeps two names that map to the same key apart."""
    key = re.sub(r"[^A-Za-z0-9.-]", "-", name) or "predictor"
    candidate, n = key, 2
    while candidate in taken:
        candidate = "%s-%d" % (key, n)
        n += 1
    return candidate


def crysplugins_input_flag(spec):
    """The command-line flag of a ``crysplugins list --json`` input (its ``flag`` when the CLI names one)."""
    return spec.get("flag") or "--" + spec["name"].replace("_", "-")


def crysplugins_is_density_input(spec):
    """True for a map input that takes the density map shown in Coot (not a Patterson map, a mask, ...)."""
    if spec.get("kind") != "map":
        return False
    name = spec["name"].lower()
    return not any(word in name for word in CRYSPLUGINS_SPECIAL_MAP_WORDS)


def crysplugins_is_fraction_map(kind, units):
    """True for a mask or a probability map: contoured at an absolute 0.5, not in rmsd units."""
    units = units or ""
    return kind == "mask" or any(word in units for word in CRYSPLUGINS_FRACTION_UNITS)


def crysplugins_process_alive(pid):
    """True when process ``pid`` runs (POSIX only: elsewhere os.kill would end it, so None)."""
    if os.name != "posix":
        return None
    try:
        os.kill(pid, 0)
    except OSError as exc:
        return exc.errno != 3  # ESRCH: no such process; EPERM: it runs under another user
    return True


def crysplugins_prune_sessions(folder, now=None):
    """Remove prediction folders that earlier Coot sessions left in ``folder`` (a crash, a Coot whose
    Python never ran atexit): those of processes that ended, or older than CRYSPLUGINS_STALE_SECONDS
    where process ids cannot be checked.  Returns the paths removed."""
    now = time.time() if now is None else now
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for entry in names:
        match = re.match(re.escape(CRYSPLUGINS_SESSION_PREFIX) + r"(\d+)-", entry)
        path = os.path.join(folder, entry)
        if match is None or not os.path.isdir(path) or int(match.group(1)) == os.getpid():
            continue
        alive = crysplugins_process_alive(int(match.group(1)))
        try:
            old = now - os.path.getmtime(path) > CRYSPLUGINS_STALE_SECONDS
        except OSError:
            continue
        if alive is False or (alive is None and old):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def crysplugins_cli_error(stderr_text, returncode):
    """The CLI's one-sentence error from its stderr (the last 'error:' line), or a fallback sentence."""
    lines = [line.strip() for line in (stderr_text or "").splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith("error:"):
            return line[len("error:"):].strip()
    if lines:
        return lines[-1]
    return "crysplugins stopped with exit status %s and no message." % returncode


class CrysPluginsJob(object):
    """One ``crysplugins`` child process; stdout/stderr go to files (no pipe can fill up and block)."""

    def __init__(self, label, argv, workdir, on_done, env=None):
        self.label = label
        self.argv = list(argv)
        self.workdir = workdir
        self.on_done = on_done
        self.env = env
        self.stdout_path = os.path.join(workdir, "stdout.txt")
        self.stderr_path = os.path.join(workdir, "stderr.txt")
        self.proc = None
        self.returncode = None
        self.finished = False

    def start(self):
        out = open(self.stdout_path, "wb")
        err = open(self.stderr_path, "wb")
        try:
            self.proc = subprocess.Popen(self.argv, stdout=out, stderr=err, stdin=subprocess.PIPE,
                                         cwd=self.workdir, env=self.env)
            self.proc.stdin.close()
        finally:
            out.close()
            err.close()
        return self

    def read(self, path):
        with io.open(path, "r", encoding="utf-8", errors="replace") as handle:
            return handle.read()

    def poll(self):
        """True while running (keep the GLib timeout), False once finished and handled."""
        if self.finished:
            return False
        if self.proc is None or self.proc.poll() is None:
            return True
        self.finished = True
        self.returncode = self.proc.returncode
        self.on_done(self, self.returncode, self.read(self.stdout_path), self.read(self.stderr_path))
        return False

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()


class CrysPluginsCoot(object):
    """The crysplugins menu and its actions, for either Coot generation.

    ``namespace`` is the dict of globals this script runs in: Coot 0.9 runs start-up scripts in the
    namespace that holds its scripting functions (``coot_menubar_menu`` and friends), Coot 1.x keeps
    them in the ``coot``/``coot_gui``/``coot_utils`` modules; :meth:`fn` looks in all of these.
    """

    def __init__(self, namespace=None, command=None, generation=None):
        self.namespace = namespace if namespace is not None else {}
        self.coot = _crysplugins_import("coot")
        self.coot_gui = _crysplugins_import("coot_gui")
        self.coot_utils = _crysplugins_import("coot_utils")
        self.generation = generation or self.detect_generation()
        self.command = list(command) if command else self.find_command()
        self.menu = None
        self.predictors = {}
        self.menu_names = []
        self.action_keys = set()
        self.jobs = []
        self.session_dir = None
        self.run_dirs = []
        self.dm_extra_args = []  # more `crysplugins density-modify` arguments, e.g. ["--cycles", "20"]
        self.timer = self.find_timer()
        self.last_result = None

    # ------------------------------------------------------------------ Coot access

    def fn(self, name):
        """A Coot scripting function by name (script namespace, coot, coot_utils, coot_gui, __main__)."""
        if name in self.namespace and callable(self.namespace[name]):
            return self.namespace[name]
        main = sys.modules.get("__main__")
        for module in (self.coot, self.coot_utils, self.coot_gui, main):
            func = getattr(module, name, None) if module is not None else None
            if callable(func):
                return func
        return None

    def call(self, name, *args):
        func = self.fn(name)
        if func is None:
            raise RuntimeError("Coot has no function %s" % name)
        return func(*args)

    def try_call(self, name, *args):
        """Call a Coot function if it exists; None when it does not or raises."""
        func = self.fn(name)
        if func is None:
            return None
        try:
            return func(*args)
        except Exception as exc:
            print("crysplugins: %s%r failed: %s" % (name, args, exc))
            return None

    def detect_generation(self):
        """'1' for Coot 1.x (GTK4 module menu buttons), '0.9' for menubar menus, None without a GUI."""
        gui = self.coot_gui
        if gui is not None and callable(getattr(gui, "attach_module_menu_button", None)) \
                and callable(getattr(gui, "add_simple_action_to_menu", None)):
            return "1"
        if self.fn("coot_menubar_menu") and self.fn("add_simple_coot_menu_menuitem"):
            return "0.9"
        return None

    def find_timer(self):
        """A ``timeout_add(ms, callback)`` of the GUI main loop (GLib for 1.x, gobject for 0.9)."""
        order = ("gobject", "glib", "GLib") if self.generation == "0.9" else ("GLib", "gobject", "glib")
        for name in order:
            if name == "GLib":
                try:
                    from gi.repository import GLib
                    return GLib.timeout_add
                except Exception:
                    continue
            module = _crysplugins_import(name)
            if module is not None and callable(getattr(module, "timeout_add", None)):
                return module.timeout_add
        return None

    def info(self, text):
        _crysplugins_say("crysplugins: " + text.replace("\n", " | "))
        self.try_call("info_dialog", text)

    def status(self, text):
        text = "crysplugins: " + text
        _crysplugins_say(text)
        self.try_call("add_status_bar_text", text)

    # ------------------------------------------------------------------ the crysplugins command

    def find_command(self):
        """The crysplugins command: $CRYSPLUGINS_COMMAND, the path baked in at install, or PATH."""
        env = os.environ.get("CRYSPLUGINS_COMMAND", "").strip()
        if env:
            return shlex.split(env)
        if CRYSPLUGINS_COMMAND:
            return list(CRYSPLUGINS_COMMAND)
        found = _crysplugins_which("crysplugins")
        return [found] if found else ["crysplugins"]

    def child_env(self):
        """The environment for the child: Coot's Python settings removed (they break another Python)."""
        env = dict(os.environ)
        for key in ("PYTHONHOME", "PYTHONPATH", "PYTHONSTARTUP", "PYTHONEXECUTABLE"):
            env.pop(key, None)
        extra = os.environ.get("CRYSPLUGINS_PYTHONPATH", "")
        if extra:
            env["PYTHONPATH"] = extra
        env.setdefault("OMP_NUM_THREADS", "2")
        return env

    def start_job(self, label, args, workdir, on_done):
        job = CrysPluginsJob(label, self.command + list(args), workdir, on_done, env=self.child_env())
        try:
            job.start()
        except OSError as exc:
            self.info("Could not run crysplugins (%s): %s.\nInstall it with 'pip install crysplugins' "
                      "and run 'crysplugins coot-install', or set CRYSPLUGINS_COMMAND." % (self.command[0], exc))
            return None
        self.jobs.append(job)
        if self.timer is not None:
            self.timer(CRYSPLUGINS_POLL_MS, job.poll)
        else:  # no main-loop timer available: wait here (the GUI is busy meanwhile)
            job.proc.wait()
            job.poll()
        return job

    # ------------------------------------------------------------------ menu

    def install_menu(self):
        """Create the crysplugins menu with its fixed items; returns the menu (None without a GUI)."""
        if self.generation == "1":
            self.menu = self.coot_gui.attach_module_menu_button(CRYSPLUGINS_MENU_LABEL)
        elif self.generation == "0.9":
            self.menu = self.call("coot_menubar_menu", CRYSPLUGINS_MENU_LABEL)
        if self.menu is None:
            # Coot 0.9's coot_menubar_menu catches its own errors and returns None while the main window
            # does not exist yet: raise, so that try_install retries from the main loop
            raise RuntimeError("Coot returned no menu (its main window is not ready)")
        self.add_item("Refresh predictor list", "refresh", self.refresh)
        self.add_item("Stop running predictions", "stop", self.stop_all)
        self.add_item("Density-modify the map's MTZ...", "density-modify", self.density_modify)
        return self.menu

    def add_item(self, label, key, callback):
        """One menu entry; in Coot 1.x a Gio action named ``crysplugins-KEY``."""
        if self.generation == "1":
            key = crysplugins_action_key(key, self.action_keys)
            self.action_keys.add(key)
            action_name = CRYSPLUGINS_ACTION_PREFIX + key
            self.coot_gui.add_simple_action_to_menu(self.menu, label, action_name,
                                                    lambda _action, _parameter: callback())
        else:
            self.call("add_simple_coot_menu_menuitem", self.menu, label, lambda _widget: callback())

    def refresh(self):
        """Ask ``crysplugins list --json`` (in the background) which predictors are installed."""
        workdir = tempfile.mkdtemp(prefix="crysplugins-coot-list-")
        return self.start_job("list", ["list", "--json"], workdir, self.on_list_done)

    def on_list_done(self, job, returncode, stdout, stderr):
        shutil.rmtree(job.workdir, ignore_errors=True)
        if returncode != 0:
            self.info("crysplugins could not list its predictors:\n" + crysplugins_cli_error(stderr, returncode))
            return
        try:
            listing = json.loads(stdout)
        except ValueError:
            self.info("crysplugins list --json printed no JSON; is %s the crysplugins command?" % self.command[0])
            return
        self.add_predictors(listing)

    def add_predictors(self, listing):
        """Add one menu item per predictor taking a map or reflections (once per name)."""
        added = []
        for row in listing.get("predictors", []):
            kinds = set(spec.get("kind") for spec in row.get("inputs", []))
            if not kinds.intersection(CRYSPLUGINS_MENU_KINDS):
                continue
            name = row["name"]
            self.predictors[name] = row
            if name in self.menu_names or self.menu is None:
                continue
            self.menu_names.append(name)
            label = "%s..." % name
            self.add_item(label, "predict-" + name, lambda name=name: self.run_predictor(name))
            added.append(name)
        failures = listing.get("failures", [])
        if failures:
            self.status("%d plugin(s) failed to load (see 'crysplugins list')" % len(failures))
        self.status("%d predictor(s) in the menu" % len(self.menu_names))
        return added

    def stop_all(self):
        running = [job for job in self.jobs if not job.finished]
        for job in running:
            job.stop()
        self.status("stopped %d running prediction(s)" % len(running))

    # ------------------------------------------------------------------ inputs from Coot

    def choose_map(self):
        """The refinement map, else the first map molecule; None when no map is loaded."""
        imol = self.try_call("imol_refinement_map")
        if imol is not None and imol >= 0 and self.try_call("is_valid_map_molecule", imol):
            return imol
        n = self.try_call("graphics_n_molecules") or 0
        for i in range(n):
            if self.try_call("is_valid_map_molecule", i):
                return i
        return None

    def model_molecule(self):
        n = self.try_call("graphics_n_molecules") or 0
        for i in range(n):
            if self.try_call("is_valid_model_molecule", i):
                return i
        return None

    def sequence_from_model(self, imol):
        """One-letter sequence of all protein chains of model ``imol`` ('' when none can be read)."""
        chains = []
        n_chains = self.try_call("n_chains", imol) or 0
        for ic in range(n_chains):
            chain = self.try_call("chain_id_py", imol, ic)
            if chain is None:
                chain = self.try_call("chain_id", imol, ic)
            if chain is not None:
                chains.append(chain)
        residues = []
        for chain in chains:
            n_res = self.try_call("chain_n_residues", chain, imol) or 0
            for serial in range(n_res):
                name = self.try_call("resname_from_serial_number", imol, chain, serial)
                code = CRYSPLUGINS_ONE_LETTER.get(str(name or "").strip().upper())
                if code:
                    residues.append(code)
        return "".join(residues)

    def mtz_columns(self, imol, roles):
        """``ROLE=LABEL,...`` for the roles Coot knows about the map's MTZ (or '')."""
        fp = self.try_call("mtz_fp_for_map", imol) or ""
        phi = self.try_call("mtz_phi_for_map", imol) or ""
        weight = self.try_call("mtz_weight_for_map", imol) or ""
        chosen = []
        coefficients = fp.upper() in CRYSPLUGINS_MAP_COEFF_LABELS
        if fp:
            role = "FWT" if coefficients else "F"
            if role in roles:
                chosen.append("%s=%s" % (role, fp))
        if phi and "PHI" in roles:
            chosen.append("PHI=%s" % phi)
        if weight and "FOM" in roles and not coefficients:  # map coefficients are weighted already
            chosen.append("FOM=%s" % weight)
        return ",".join(chosen)

    def build_inputs(self, row, imol, workdir, answers=None):
        """Command-line arguments for predictor ``row`` (a ``crysplugins list --json`` entry) from map ``imol``.

        The map shown in Coot goes to the predictor's density-map input (exported with ``export_map``), the
        MTZ it was calculated from to its reflections input; of two alternatives (a group such as map *or*
        reflections) only the map is given.  A required sequence comes from the first model molecule (or
        ``answers``, what the user typed into a dialog: input name -> text); cell, space group and resolution
        come from the map when no MTZ is passed.  Returns (args, problem, needs): ``problem`` is a sentence
        when the run cannot start, ``needs`` the input spec (a sequence, a number) to ask for first.
        """
        specs = row.get("inputs", [])
        groups = {}
        for spec in specs:
            if spec.get("group"):
                groups.setdefault(spec["group"], []).append(spec["name"])
        mtz = self.try_call("mtz_hklin_for_map", imol) or ""
        if mtz and not os.path.isfile(mtz):
            mtz = ""
        args, given, problem = self.map_and_mtz_args(specs, groups, imol, mtz, workdir)
        if problem:
            return None, problem, None
        with_mtz = any(spec["name"] in given and spec.get("kind") == "reflections" for spec in specs)
        for spec in specs:
            if spec["name"] in given:
                continue
            value, problem, needs = self.derived_value(row, spec, groups, given, imol, workdir, with_mtz,
                                                       answers or {})
            if problem or needs:
                return None, problem, needs
            if value is not None:
                args += [crysplugins_input_flag(spec), value]
                given.add(spec["name"])
        for group, members in sorted(groups.items()):
            if not any(n in given for n in members):
                kinds = [s.get("kind") for s in specs if s["name"] in members]
                if "reflections" in kinds and not mtz:
                    return None, ("%s needs the MTZ file the map was calculated from; map %d was not made from "
                                  "an MTZ file in this Coot session." % (row["name"], imol)), None
                flags = [crysplugins_input_flag(s) for s in specs if s["name"] in members]
                return None, ("%s needs one of %s; none could be taken from Coot." %
                              (row["name"], ", ".join(flags))), None
        return args, None, None

    def map_and_mtz_args(self, specs, groups, imol, mtz, workdir):
        """Arguments for the map shown in Coot and its MTZ: (args, names given, problem sentence or None).

        A Patterson or mask input never gets the density map; a reflections input that is an alternative
        to a map already given is left out (the command refuses both)."""
        args, given = [], set()

        def taken(spec):
            group = spec.get("group")
            return bool(group) and any(n in given for n in groups[group])

        for spec in specs:
            if not crysplugins_is_density_input(spec) or taken(spec):
                continue
            path = os.path.join(workdir, "coot_map_%d.ccp4" % imol)
            ok = self.try_call("export_map", imol, path)
            if not ok or not os.path.isfile(path):
                return None, given, "Coot could not export map %d to %s." % (imol, path)
            args += [crysplugins_input_flag(spec), path]
            given.add(spec["name"])
        for spec in specs:
            if spec.get("kind") != "reflections" or not mtz or taken(spec):
                continue
            flag = crysplugins_input_flag(spec)
            roles = [alt.upper() for r in spec.get("columns", []) for alt in r.rstrip("?").split("|")]
            args += [flag, mtz]
            columns = self.mtz_columns(imol, roles)
            if columns:
                args += [spec.get("columns_flag") or flag + "-columns", columns]
            given.add(spec["name"])
        return args, given, None

    def derived_value(self, row, spec, groups, given, imol, workdir, with_mtz, answers):
        """The value of one more input taken from Coot or ``answers``: (value or None, problem, needs)."""
        name, kind = spec["name"], spec.get("kind")
        group = spec.get("group")
        wanted = spec.get("required") or (bool(group) and not any(n in given for n in groups[group]))
        if kind in ("cell", "spacegroup") or (kind == "float" and name in ("resolution", "d_min")):
            if with_mtz:
                return None, None, None  # the MTZ carries them
            if kind == "cell":
                cell = self.try_call("cell_py", imol)
                return (" ".join("%g" % x for x in cell) if cell else None), None, None
            if kind == "spacegroup":
                sg = self.try_call("show_spacegroup", imol)
                return (sg if sg and "no spacegroup" not in str(sg).lower() else None), None, None
            d_min = self.try_call("data_resolution", imol)
            return ("%g" % d_min if d_min is not None and d_min > 0 else None), None, None
        if not wanted:
            return None, None, None
        if kind == "sequence":
            value = answers.get(name)
            if not value:
                model = self.model_molecule()
                value = self.sequence_from_model(model) if model is not None else ""
            if not value:
                return None, None, spec
            path = os.path.join(workdir, "sequence.fasta")
            with io.open(path, "w", encoding="utf-8") as handle:
                handle.write(u">coot\n%s\n" % value)
            return path, None, None
        if kind == "structure":
            model = self.model_molecule()
            path = os.path.join(workdir, "coot_model.pdb")
            if model is None or not self.try_call("write_pdb_file", model, path):
                return None, "%s needs a model; load one in Coot first." % row["name"], None
            return path, None, None
        if kind == "reflections" or (kind == "map" and group):
            if group and len(groups[group]) > 1:
                return None, None, None  # another member of the group may be given
            return None, ("%s needs the MTZ file the map was calculated from; map %d was not made from "
                          "an MTZ file in this Coot session." % (row["name"], imol)), None
        if kind in ("float", "int") and spec.get("required") and spec.get("default") is None:
            if name in answers:
                return answers[name], None, None
            return None, None, spec
        if spec.get("required") and spec.get("default") is None:
            flag = crysplugins_input_flag(spec)
            return None, ("%s needs %s, which the Coot menu cannot fill in; run 'crysplugins predict %s "
                          "--help' in a terminal." % (row["name"], flag, row["name"])), None
        return None, None, None

    # ------------------------------------------------------------------ prediction folders

    def new_run_dir(self, name):
        """A fresh folder for one prediction inside this Coot session's folder.  Only the newest
        CRYSPLUGINS_KEEP_RUNS folders are kept (Coot holds the maps it read in memory); the session
        folder goes when Coot exits."""
        if self.session_dir is None or not os.path.isdir(self.session_dir):
            crysplugins_prune_sessions(tempfile.gettempdir())
            self.session_dir = tempfile.mkdtemp(prefix="%s%d-" % (CRYSPLUGINS_SESSION_PREFIX, os.getpid()))
            self.run_dirs = []
            atexit.register(self.cleanup)
        running = set(job.workdir for job in self.jobs if not job.finished)
        removable = [d for d in self.run_dirs if d not in running]
        while removable and len(self.run_dirs) >= CRYSPLUGINS_KEEP_RUNS:
            old = removable.pop(0)
            self.run_dirs.remove(old)
            shutil.rmtree(old, ignore_errors=True)
        path = tempfile.mkdtemp(prefix=crysplugins_action_key(name, ()) + "-", dir=self.session_dir)
        self.run_dirs.append(path)
        return path

    def remove_inputs(self, workdir):
        """Delete the copies of Coot's molecules a finished prediction read (maps can be large)."""
        for entry in os.listdir(workdir) if os.path.isdir(workdir) else []:
            if entry.startswith("coot_map_") or entry in ("sequence.fasta", "coot_model.pdb"):
                try:
                    os.remove(os.path.join(workdir, entry))
                except OSError:
                    pass

    def cleanup(self):
        """Stop running predictions and remove this session's prediction folders (at Coot's exit)."""
        for job in self.jobs:
            job.stop()
        if self.session_dir is not None:
            shutil.rmtree(self.session_dir, ignore_errors=True)
        self.run_dirs = []

    # ------------------------------------------------------------------ actions

    def run_predictor(self, name, answers=None):
        """The menu action: export the map, start ``crysplugins predict`` in the background."""
        row = self.predictors.get(name)
        if row is None:
            self.info("crysplugins has no predictor called %s; use 'Refresh predictor list'." % name)
            return None
        imol = self.choose_map()
        if imol is None:
            self.info("Load a map (or an MTZ file) in Coot first: %s works on a map." % name)
            return None
        workdir = self.new_run_dir(name)
        args, problem, needs = self.build_inputs(row, imol, workdir, answers)
        if needs is not None or problem:
            self.run_dirs.remove(workdir)
            shutil.rmtree(workdir, ignore_errors=True)
        if needs is not None:
            return self.ask_value(name, needs, answers or {})
        if problem:
            self.info(problem)
            return None
        out_dir = os.path.join(workdir, "out")
        argv = ["predict", name] + args + ["--out", out_dir, "--json", "--quiet"]
        self.status("running %s on map %d ..." % (name, imol))
        job = self.start_job(name, argv, workdir,
                             lambda job, rc, out, err: self.on_predict_done(job, rc, out, err, name, imol, out_dir))
        return job

    def density_modify(self, solvent_fraction=None):
        """Menu action: ``crysplugins density-modify`` on the MTZ (F, SIGF, PHIB/FOM or HL) of the shown map.

        The solvent content comes from the sequence of the loaded model (Matthews + U-net, eq. 2), else
        it is asked for; the density-modified map (FWT/PHWT of density_modified.mtz) is read back."""
        imol = self.choose_map()
        mtz = self.try_call("mtz_hklin_for_map", imol) if imol is not None else None
        if not mtz:
            self.info("Density modification needs a map calculated from an MTZ file with amplitudes and "
                      "experimental phases (PHIB/FOM or HL): open it with File > Open MTZ first.")
            return None
        workdir = self.new_run_dir("density-modify")
        args = ["density-modify", "--reflections", mtz, "--out", os.path.join(workdir, "out")]
        fp, phi, weight = [self.try_call(f, imol) or "" for f in
                           ("mtz_fp_for_map", "mtz_phi_for_map", "mtz_weight_for_map")]
        if fp and phi and weight and fp.upper() not in CRYSPLUGINS_MAP_COEFF_LABELS:
            args += ["--reflections-columns", "F=%s,PHI=%s,FOM=%s" % (fp, phi, weight)]
        imodel = self.model_molecule()
        sequence = self.sequence_from_model(imodel) if imodel is not None else ""
        if solvent_fraction is not None:
            args += ["--solvent-fraction", str(solvent_fraction)]
        elif sequence:
            path = os.path.join(workdir, "sequence.fasta")
            with io.open(path, "w", encoding="utf-8") as handle:
                handle.write(u">coot\n%s\n" % sequence)
            args += ["--sequence", path]
        else:
            self.run_dirs.remove(workdir)
            shutil.rmtree(workdir, ignore_errors=True)
            return self.ask_solvent_fraction()
        self.status("density-modifying %s ..." % os.path.basename(mtz))
        return self.start_job("density-modify", args + self.dm_extra_args, workdir,
                              lambda job, rc, out, err: self.on_density_modify_done(job, rc, out, err))

    def ask_solvent_fraction(self):
        dialog = self.fn("generic_single_entry")
        if dialog is None:
            self.info("Density modification needs the solvent fraction or a model for the sequence.")
            return None

        def go(text):
            try:
                value = float(str(text).strip())
            except ValueError:
                value = -1.0
            if not 0.0 < value < 1.0:
                self.info("The solvent fraction must be a number between 0 and 1, not '%s'." % text)
                return None
            return self.density_modify(value)

        dialog("Solvent fraction of the crystal (0-1; load a model to use its sequence instead):", "0.5", "Run", go)
        return None

    def on_density_modify_done(self, job, returncode, stdout, stderr):
        self.remove_inputs(job.workdir)
        if returncode != 0:
            self.info("crysplugins density-modify failed:\n%s" % crysplugins_cli_error(stderr, returncode))
            return None
        mtz = os.path.join(job.workdir, "out", "density_modified.mtz")
        imol = self.try_call("make_and_draw_map", mtz, "FWT", "PHWT", "", 0, 0)
        lines = [l for l in stdout.splitlines() if l.strip()]
        if imol is None or imol < 0:
            self.info("Coot could not read the density-modified map %s." % mtz)
            return None
        self.try_call("set_molecule_name", imol, "crysplugins density-modified (FWT/PHWT)")
        self.try_call("set_contour_level_in_sigma", imol, CRYSPLUGINS_MAP_LEVEL_SIGMA)
        lines.append("density-modified map -> molecule %d (FWT/PHWT; PHIB/FOM and HLA-HLD in the MTZ)" % imol)
        self.status("density-modify finished: molecule %d" % imol)
        self.info("\n".join(lines))
        return imol

    def ask_value(self, name, spec, answers):
        """Ask for a sequence or a number in a one-line dialog; its button starts the prediction again."""
        dialog = self.fn("generic_single_entry")
        flag = crysplugins_input_flag(spec)
        if spec.get("kind") == "sequence":
            question = "%s needs the protein sequence (one-letter codes):" % name
        else:
            question = "%s needs %s: %s" % (name, flag, spec.get("help") or spec["name"])
        if dialog is None:
            if spec.get("kind") == "sequence":
                self.info("%s needs the sequence: load a model in Coot first." % name)
            else:
                self.info("%s needs %s; run 'crysplugins predict %s --help' in a terminal." % (name, flag, name))
            return None

        def go(text):
            given = dict(answers)
            value = "".join(str(text).split())
            if spec.get("kind") in ("float", "int"):
                try:
                    float(value)
                except ValueError:
                    self.info("%s needs a number for %s, not '%s'." % (name, flag, text))
                    return None
            given[spec["name"]] = value
            return self.run_predictor(name, given)

        dialog(question, "", "Run", go)
        return None

    def on_predict_done(self, job, returncode, stdout, stderr, name, imol, out_dir):
        self.remove_inputs(job.workdir)
        if returncode != 0:
            self.info("crysplugins %s failed:\n%s" % (name, crysplugins_cli_error(stderr, returncode)))
            return
        try:
            result = json.loads(stdout)
        except ValueError:
            path = os.path.join(out_dir, "result.json")
            if not os.path.isfile(path):
                self.info("crysplugins %s finished but wrote no result (%s)." % (name, out_dir))
                return
            with io.open(path, "r", encoding="utf-8") as handle:
                result = json.load(handle)
        self.last_result = result
        self.load_result(name, result)

    def load_result(self, name, result):
        """Read the maps back into Coot, name and contour them, and report the scalars."""
        row = self.predictors.get(name, {})
        output_kinds = dict((o.get("name"), o.get("kind")) for o in row.get("outputs", []))
        loaded = []
        for out_name, path in sorted(result.get("files", {}).items()):
            if path.lower().endswith((".ccp4", ".map", ".mrc")):
                imol = self.try_call("read_ccp4_map", path, 0)
                if imol is None or imol < 0:
                    self.info("Coot could not read the map %s written by %s." % (path, name))
                    continue
                self.try_call("set_molecule_name", imol, "crysplugins %s: %s" % (name, out_name))
                units = result.get("maps", {}).get(out_name, {}).get("units", "")
                if crysplugins_is_fraction_map(output_kinds.get(out_name), units):
                    self.try_call("set_contour_level_absolute", imol, CRYSPLUGINS_MASK_LEVEL)
                else:
                    self.try_call("set_contour_level_in_sigma", imol, CRYSPLUGINS_MAP_LEVEL_SIGMA)
                loaded.append((out_name, imol))
        has_maps = any(p.lower().endswith((".ccp4", ".map", ".mrc")) for p in result.get("files", {}).values())
        for out_name, info in sorted(result.get("reflections", {}).items()):
            path = result.get("files", {}).get(out_name)
            columns = info.get("columns", {})
            if has_maps or not path or not columns.get("F") or not columns.get("PHI"):
                continue  # a map of the same result is shown already (or no map coefficients)
            weight = columns.get("FOM", "")
            imol = self.try_call("make_and_draw_map", path, columns["F"], columns["PHI"], weight,
                                 1 if weight else 0, 0)
            if imol is not None and imol >= 0:
                self.try_call("set_molecule_name", imol, "crysplugins %s: %s" % (name, out_name))
                loaded.append((out_name, imol))
        lines = ["%s finished in %.2f s." % (name, float(result.get("seconds", 0.0)))]
        for sname, scalar in sorted(result.get("scalars", {}).items()):
            value = scalar.get("value")
            text = ("%.4g" % value) if isinstance(value, (int, float)) else str(value)
            lines.append(("%s: %s %s" % (sname, text, scalar.get("unit", "") or "")).rstrip())
        for message in result.get("messages", []):
            lines.append(str(message))
        for out_name, imol in loaded:
            lines.append("map %s -> molecule %d" % (out_name, imol))
        files = result.get("files", {})
        if files:
            lines.append("files in %s (removed when Coot exits)" % os.path.dirname(list(files.values())[0]))
        self.status(" ; ".join(lines[:1] + [l for l in lines[1:] if ":" in l][:3]))
        self.info("\n".join(lines))
        return loaded

    # ------------------------------------------------------------------ start-up

    @classmethod
    def load(cls, namespace=None):
        """Create the menu once per Coot session (Coot 1.x may read both start-up folders)."""
        if getattr(sys, "_crysplugins_coot", None) is not None:
            return sys._crysplugins_coot
        app = cls(namespace)
        if app.generation is None:
            print("crysplugins: no Coot GUI found; the crysplugins menu is not added.")
            return app
        sys._crysplugins_coot = app
        app.try_install(retries=CRYSPLUGINS_MENU_RETRIES)
        return app

    def try_install(self, retries=0):
        """Add the menu and start listing predictors.  A start-up script may run before Coot's main
        window exists; then the menu calls fail and this retries from the main loop once a second."""
        try:
            menu = self.install_menu()
        except Exception as exc:
            self.menu = None
            if retries > 0 and self.timer is not None:
                _crysplugins_say("crysplugins: Coot's menus are not ready (%s); trying again" % exc)
                self.timer(1000, lambda: self.try_install(retries - 1))
            else:
                _crysplugins_say("crysplugins: could not add the crysplugins menu: %s" % exc)
            return False  # a GLib/gobject timeout callback: do not repeat this call
        if menu is not None:
            self.refresh()
        return False


crysplugins_coot = CrysPluginsCoot.load(globals())
