"""Stand-in ``coot``, ``coot_gui``, ``coot_utils`` (and ``gi.repository.GLib`` / ``gobject``) modules.

They record every call the crysplugins Coot script makes, so tests can check the menu, the actions, the
command line built, and what was read back.  Two backends for the molecules:

* :class:`FakeCoot` keeps molecules as files: ``export_map`` copies the map file a molecule was read
  from, ``read_ccp4_map`` checks the file is a CCP4 map (its 1024-byte header says 'MAP ') and adds a
  molecule;
* :class:`HeadlessCoot` forwards the map calls to a real ``coot_headless_api.molecules_container_t``
  (``read_ccp4_map``, ``write_map``, ``set_molecule_name``), so the exported and read-back maps go
  through Coot's own map code.

``timeout_add`` never runs anything by itself: it records (ms, callback); the test calls
:meth:`Recorder.run_timers` which calls each callback until it returns False (as GLib would).
"""
from __future__ import annotations

import os
import re
import shutil
import struct
import time
import types
from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass
class MenuItem:
    label: str
    action_name: str | None
    callback: Callable


@dataclass
class FakeMenu:
    """A Coot 1.x Gio.Menu or a Coot 0.9 gtk.Menu: a list of items."""

    title: str
    items: list[MenuItem] = field(default_factory=list)

    def labels(self) -> list[str]:
        return [item.label for item in self.items]

    def item(self, label: str) -> MenuItem:
        for item in self.items:
            if item.label == label:
                return item
        raise KeyError(f"no menu item {label!r} in {self.labels()}")


class Recorder:
    """Collects calls, menus, actions, dialogs, status-bar texts and pending timeouts."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple]] = []
        self.menus: dict[str, FakeMenu] = {}
        self.actions: dict[str, Callable] = {}
        self.dialogs: list[str] = []
        self.status: list[str] = []
        self.entry_dialogs: list[tuple[str, Callable]] = []
        self.timers: list[tuple[int, Callable]] = []
        #: Coot 0.9 before its main window exists: coot_menubar_menu catches the error and returns None
        self.menubar_missing_for = 0

    def record(self, name: str, *args: Any) -> None:
        self.calls.append((name, args))

    def called(self, name: str) -> list[tuple]:
        return [args for n, args in self.calls if n == name]

    # ---- main loop
    def timeout_add(self, ms: int, callback: Callable) -> int:
        self.record("timeout_add", ms)
        self.timers.append((ms, callback))
        return len(self.timers)

    def run_timers(self, timeout: float = 60.0) -> int:
        """Call every pending timeout callback until it returns False (the child process finished)."""
        ticks = 0
        deadline = time.monotonic() + timeout
        while self.timers:
            ms, callback = self.timers[0]
            if callback():
                ticks += 1
                if time.monotonic() > deadline:
                    raise TimeoutError("a crysplugins job did not finish in time")
                time.sleep(ms / 1000.0)
            else:
                self.timers.pop(0)
        return ticks

    # ---- menus, Coot 1.x
    def attach_module_menu_button(self, name: str) -> FakeMenu:
        self.record("attach_module_menu_button", name)
        return self.menus.setdefault(name, FakeMenu(name))

    def add_simple_action_to_menu(self, menu: FakeMenu, label: str, action_name: str, callback: Callable) -> None:
        self.record("add_simple_action_to_menu", menu.title, label, action_name)
        # Gio.SimpleAction.new raises for names other than letters, digits, '-' and '.'
        if not re.fullmatch(r"[A-Za-z0-9.-]+", action_name):
            raise TypeError(f"'{action_name}' is not a valid action name")
        self.actions[action_name] = callback  # Gio: app.add_action replaces an action of the same name
        menu.items.append(MenuItem(label, action_name, callback))

    # ---- menus, Coot 0.9
    def coot_menubar_menu(self, name: str) -> FakeMenu:
        self.record("coot_menubar_menu", name)
        if self.menubar_missing_for > 0:
            self.menubar_missing_for -= 1
            return None  # Coot 0.9 prints the error and returns None, raises nothing
        return self.menus.setdefault(name, FakeMenu(name))

    def add_simple_coot_menu_menuitem(self, menu: FakeMenu, label: str, callback: Callable) -> None:
        self.record("add_simple_coot_menu_menuitem", menu.title, label)
        menu.items.append(MenuItem(label, None, callback))

    # ---- dialogs
    def info_dialog(self, text: str) -> None:
        self.record("info_dialog", text)
        self.dialogs.append(text)

    def add_status_bar_text(self, text: str) -> None:
        self.record("add_status_bar_text", text)
        self.status.append(text)

    def generic_single_entry(self, label: str, default: str, go_label: str, handler: Callable) -> None:
        self.record("generic_single_entry", label, default, go_label)
        self.entry_dialogs.append((label, handler))

    def activate(self, menu_title: str, label: str) -> Any:
        """Activate a menu item the way the given Coot generation calls its callback."""
        item = self.menus[menu_title].item(label)
        if item.action_name is not None:
            return item.callback(object(), None)  # Gio.SimpleAction 'activate': (action, parameter)
        return item.callback(object())             # gtk 'activate': (menuitem)


def is_ccp4_map(path: str) -> bool:
    """True when ``path`` has a CCP4 map header ('MAP ' at byte 208) and some data after it."""
    with open(path, "rb") as handle:
        header = handle.read(1024)
    if len(header) < 1024 or header[208:212] != b"MAP ":
        return False
    nc, nr, ns, mode = struct.unpack("<4i", header[:16])
    return os.path.getsize(path) >= 1024 + nc * nr * ns * 4 and mode == 2


class FakeCoot:
    """Molecules as files plus everything the script may call, all recorded."""

    def __init__(self, recorder: Recorder) -> None:
        self.r = recorder
        self.molecules: dict[int, dict[str, Any]] = {}
        self.refinement_map = -1

    # ---- set-up helpers for tests
    def add_map(self, path: str, mtz: str = "", fp: str = "", phi: str = "", weight: str = "",
                cell=(18.0, 18.0, 18.0, 90.0, 90.0, 90.0), spacegroup: str = "P 1", resolution: float = -1.0) -> int:
        imol = len(self.molecules)
        self.molecules[imol] = {"kind": "map", "path": path, "name": os.path.basename(path), "mtz": mtz,
                                "fp": fp, "phi": phi, "weight": weight, "cell": list(cell),
                                "spacegroup": spacegroup, "resolution": resolution}
        return imol

    def add_model(self, chains: dict[str, list[str]]) -> int:
        imol = len(self.molecules)
        self.molecules[imol] = {"kind": "model", "chains": chains, "name": "model"}
        return imol

    # ---- Coot scripting API
    def imol_refinement_map(self) -> int:
        self.r.record("imol_refinement_map")
        return self.refinement_map

    def graphics_n_molecules(self) -> int:
        return len(self.molecules)

    def is_valid_map_molecule(self, imol: int) -> int:
        return int(self.molecules.get(imol, {}).get("kind") == "map")

    def is_valid_model_molecule(self, imol: int) -> int:
        return int(self.molecules.get(imol, {}).get("kind") == "model")

    def export_map(self, imol: int, path: str) -> int:
        self.r.record("export_map", imol, path)
        if not self.is_valid_map_molecule(imol):
            return 0
        shutil.copyfile(self.molecules[imol]["path"], path)
        return 1

    def read_ccp4_map(self, path: str, is_diff_map: int) -> int:
        self.r.record("read_ccp4_map", path, is_diff_map)
        if not os.path.isfile(path) or not is_ccp4_map(path):
            return -1
        return self.add_map(path)

    def make_and_draw_map(self, path: str, f: str, phi: str, weight: str, use_weights: int, is_diff: int) -> int:
        self.r.record("make_and_draw_map", path, f, phi, weight, use_weights, is_diff)
        if not os.path.isfile(path):
            return -1
        return self.add_map(path, mtz=path, fp=f, phi=phi, weight=weight)

    def set_molecule_name(self, imol: int, name: str) -> None:
        self.r.record("set_molecule_name", imol, name)
        self.molecules[imol]["name"] = name

    def set_contour_level_in_sigma(self, imol: int, level: float) -> None:
        self.r.record("set_contour_level_in_sigma", imol, level)

    def set_contour_level_absolute(self, imol: int, level: float) -> None:
        self.r.record("set_contour_level_absolute", imol, level)

    def mtz_hklin_for_map(self, imol: int) -> str:
        return self.molecules[imol].get("mtz", "")

    def mtz_fp_for_map(self, imol: int) -> str:
        return self.molecules[imol].get("fp", "")

    def mtz_phi_for_map(self, imol: int) -> str:
        return self.molecules[imol].get("phi", "")

    def mtz_weight_for_map(self, imol: int) -> str:
        return self.molecules[imol].get("weight", "")

    def cell_py(self, imol: int):
        return self.molecules[imol].get("cell") or False

    def show_spacegroup(self, imol: int) -> str:
        return self.molecules[imol].get("spacegroup") or "No Spacegroup"

    def data_resolution(self, imol: int) -> float:
        return self.molecules[imol].get("resolution", -1.0)

    def n_chains(self, imol: int) -> int:
        return len(self.molecules[imol]["chains"])

    def chain_id_py(self, imol: int, ic: int) -> str:
        return list(self.molecules[imol]["chains"])[ic]

    def chain_n_residues(self, chain_id: str, imol: int) -> int:
        return len(self.molecules[imol]["chains"][chain_id])

    def resname_from_serial_number(self, imol: int, chain_id: str, serial: int) -> str:
        return self.molecules[imol]["chains"][chain_id][serial]

    FUNCTIONS = ("imol_refinement_map", "graphics_n_molecules", "is_valid_map_molecule", "is_valid_model_molecule",
                 "export_map", "read_ccp4_map", "make_and_draw_map", "set_molecule_name", "set_contour_level_in_sigma",
                 "set_contour_level_absolute", "mtz_hklin_for_map", "mtz_fp_for_map", "mtz_phi_for_map",
                 "mtz_weight_for_map", "cell_py", "show_spacegroup", "data_resolution", "n_chains", "chain_id_py",
                 "chain_n_residues", "resname_from_serial_number")


class HeadlessCoot(FakeCoot):
    """The map calls go to a real coot_headless_api ``molecules_container_t``."""

    def __init__(self, recorder: Recorder, mc: Any) -> None:
        super().__init__(recorder)
        self.mc = mc

    def load_map(self, path: str) -> int:
        imol = self.mc.read_ccp4_map(path, False)
        assert imol >= 0, f"coot_headless_api could not read {path}"
        self.molecules[imol] = {"kind": "map", "path": path, "name": os.path.basename(path), "mtz": ""}
        return imol

    def load_mtz(self, path: str, f: str, phi: str, weight: str = "") -> int:
        """A map calculated by Coot from MTZ map coefficients (Coot remembers the MTZ, the labels and the
        data resolution, which ``data_resolution`` returns)."""
        import gemmi

        imol = self.mc.read_mtz(path, f, phi, weight, bool(weight), False)
        assert imol >= 0, f"coot_headless_api could not read {path}"
        mtz = gemmi.read_mtz_file(path)
        self.molecules[imol] = {"kind": "map", "path": path, "name": os.path.basename(path), "mtz": path,
                                "fp": f, "phi": phi, "weight": weight, "resolution": mtz.resolution_high(),
                                "cell": list(mtz.cell.parameters), "spacegroup": mtz.spacegroup.xhm()}
        return imol

    def graphics_n_molecules(self) -> int:
        return self.mc.get_number_of_molecules()

    def is_valid_map_molecule(self, imol: int) -> int:
        return int(self.mc.is_valid_map_molecule(imol))

    def is_valid_model_molecule(self, imol: int) -> int:
        return int(self.mc.is_valid_model_molecule(imol))

    def export_map(self, imol: int, path: str) -> int:
        self.r.record("export_map", imol, path)
        return self.mc.write_map(imol, path)

    def read_ccp4_map(self, path: str, is_diff_map: int) -> int:
        self.r.record("read_ccp4_map", path, is_diff_map)
        imol = self.mc.read_ccp4_map(path, bool(is_diff_map))
        if imol >= 0:
            self.molecules[imol] = {"kind": "map", "path": path, "name": os.path.basename(path), "mtz": ""}
        return imol

    def set_molecule_name(self, imol: int, name: str) -> None:
        self.r.record("set_molecule_name", imol, name)
        self.mc.set_molecule_name(imol, name)


def install_modules(monkeypatch, generation: str, coot: FakeCoot, recorder: Recorder,
                    menus_in: str = "coot_gui", real_glib: bool = False) -> dict[str, types.ModuleType]:
    """Put stand-in modules into ``sys.modules`` for Coot ``generation`` ('1' or '0.9').

    Coot 1.x: ``coot`` (scripting API), ``coot_utils``, ``coot_gui`` with attach_module_menu_button and
    add_simple_action_to_menu, and ``gi.repository.GLib`` (timeout_add).  Coot 0.9: ``coot`` and
    ``gobject`` (timeout_add); the menu functions live in ``coot_gui`` (``menus_in='coot_gui'``) or in
    the namespace the script runs in (``menus_in='namespace'``, as when Coot 0.9 execs start-up scripts
    in its own globals; the caller passes :func:`namespace_functions` to the script).
    ``real_glib=True`` leaves the real ``gi.repository.GLib`` in place (a real main loop polls).
    Returns the modules installed.
    """
    import sys

    mods: dict[str, types.ModuleType] = {}
    coot_mod = types.ModuleType("coot")
    for name in FakeCoot.FUNCTIONS:
        setattr(coot_mod, name, getattr(coot, name))
    coot_mod.info_dialog = recorder.info_dialog
    coot_mod.add_status_bar_text = recorder.add_status_bar_text
    mods["coot"] = coot_mod
    mods["coot_utils"] = types.ModuleType("coot_utils")
    gui = types.ModuleType("coot_gui")
    gui.generic_single_entry = recorder.generic_single_entry
    if generation == "1":
        gui.attach_module_menu_button = recorder.attach_module_menu_button
        gui.add_simple_action_to_menu = recorder.add_simple_action_to_menu
    if generation == "1" and not real_glib:
        glib = types.ModuleType("gi.repository.GLib")
        glib.timeout_add = recorder.timeout_add
        repo = types.ModuleType("gi.repository")
        repo.GLib = glib
        gi = types.ModuleType("gi")
        gi.repository = repo
        mods.update({"gi": gi, "gi.repository": repo, "gi.repository.GLib": glib})
    elif generation != "1":
        if menus_in == "coot_gui":
            gui.coot_menubar_menu = recorder.coot_menubar_menu
            gui.add_simple_coot_menu_menuitem = recorder.add_simple_coot_menu_menuitem
        gobject = types.ModuleType("gobject")
        gobject.timeout_add = recorder.timeout_add
        mods["gobject"] = gobject
        # GLib must not be found first in a pygtk Coot: hide any real gi
        mods["gi"] = None  # type: ignore[assignment]
    mods["coot_gui"] = gui
    for name, mod in mods.items():
        monkeypatch.setitem(sys.modules, name, mod)
    return mods


def namespace_functions(recorder: Recorder) -> dict[str, Callable]:
    """The Coot 0.9 menu functions as globals of the script namespace."""
    return {"coot_menubar_menu": recorder.coot_menubar_menu,
            "add_simple_coot_menu_menuitem": recorder.add_simple_coot_menu_menuitem}
