"""The main window: open maps / MTZ / coordinates / sequences, look at maps, run predictors, save results.

* File > Open (or drag and drop, or the recent-files menu) accepts CCP4/MRC maps, MTZ files, PDB/mmCIF
  coordinates and FASTA/plain sequences.  An MTZ with amplitude and phase columns is also turned into a
  map (gemmi ``transform_f_phi_to_map``, grid spacing d_min / 3 by default: the Shannon rate of 1.5 with a
  factor 2 margin) after a column-choice dialog whose defaults are the automatic picks (FWT/PHWT first).
  A model is drawn on the slices (atoms near each plane) and the sequence of each distinct protein chain
  is offered to predictors that take a sequence.
* The centre shows :class:`~crysplugins.gui.map_view.MapView`; the right dock the reusable
  :class:`~crysplugins.gui.predictor_panel.PredictorPanel`; the left dock the open data; the bottom dock the
  results (scalars and tables of each prediction).  Result maps are added to the view and overlaid on the
  map that was shown.
* File > Save writes maps as CCP4 (or MTZ: F, PHI from gemmi ``transform_map_to_f_phi``), reflections as
  MTZ, tables as TSV, and the current view as PNG, each atomically.
* Plugins > Installed plugins lists the host's predictors and plugin failures.

Errors a user can cause are shown in a (non-blocking) message box with the one-sentence CrysError text.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gemmi
import numpy as np
from PyQt6.QtCore import QSettings, Qt, pyqtSignal
from PyQt6.QtGui import QAction, QKeySequence
from PyQt6.QtWidgets import (QDockWidget, QFileDialog, QHBoxLayout, QMainWindow, QMessageBox, QPushButton,
                             QTreeWidget, QTreeWidgetItem, QVBoxLayout, QWidget)

from crysplugins.crystal import io
from crysplugins.errors import CrysError
from crysplugins.inputs import load_input
from crysplugins.interface import CrystalMap, InputSpec, Kind, Prediction, Reflections, Sequence
from crysplugins.gui.dialogs import ColumnDialog, PluginsDialog, show_error
from crysplugins.gui.map_view import MapView
from crysplugins.gui.predictor_panel import PredictorPanel

MAP_SUFFIXES = {".ccp4", ".map", ".mrc"}
MTZ_SUFFIXES = {".mtz"}
STRUCTURE_SUFFIXES = {".pdb", ".ent", ".cif", ".mmcif"}
SEQUENCE_SUFFIXES = {".fasta", ".fa", ".fas", ".seq", ".pir", ".txt"}
OPEN_FILTER = ("All supported (*.ccp4 *.map *.mrc *.mtz *.pdb *.ent *.cif *.mmcif *.gz *.fasta *.fa *.fas *.seq "
               "*.pir *.txt);;Maps (*.ccp4 *.map *.mrc);;MTZ (*.mtz);;Coordinates (*.pdb *.ent *.cif *.mmcif *.gz);;"
               "Sequences (*.fasta *.fa *.fas *.seq *.pir *.txt);;All files (*)")
MAX_RECENT = 10
#: Default grid sampling for maps made from MTZ coefficients: grid spacing = d_min / SAMPLING (Å).
SAMPLING = 3.0


def default_settings() -> QSettings:
    """The app's QSettings (recent files): the INI file named by CRYSPLUGINS_GUI_SETTINGS, else the user's."""
    path = os.environ.get("CRYSPLUGINS_GUI_SETTINGS", "").strip()
    if path:
        return QSettings(path, QSettings.Format.IniFormat)
    return QSettings("crysplugins", "crysplugins-gui")


@dataclass
class Document:
    """Something open in the window."""

    kind: str        # 'map', 'reflections', 'structure', 'sequence', 'table'
    name: str
    obj: Any
    path: str | None = None


def file_kind(path: str | Path) -> str:
    """'map', 'mtz', 'structure' or 'sequence' from the file name (a trailing .gz is ignored)."""
    p = Path(path)
    suffixes = [s.lower() for s in p.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    suffix = suffixes[-1] if suffixes else ""
    for kind, group in (("map", MAP_SUFFIXES), ("mtz", MTZ_SUFFIXES), ("structure", STRUCTURE_SUFFIXES),
                        ("sequence", SEQUENCE_SUFFIXES)):
        if suffix in group:
            return kind
    raise CrysError(f"{p.name} is not a file type crysplugins opens (maps .ccp4/.map/.mrc, reflections .mtz, "
                    f"coordinates .pdb/.cif, sequences .fasta/.seq/.txt).")


def chain_sequences(structure: gemmi.Structure, name: str) -> list[Sequence]:
    """One Sequence per distinct protein chain of the first model (standard residues; MSE read as M)."""
    out: list[Sequence] = []
    seen: set[str] = set()
    for chain in structure[0]:
        codes = []
        for residue in chain:
            info = gemmi.find_tabulated_residue(residue.name)
            if info is not None and info.is_amino_acid():
                code = info.one_letter_code.upper()
                codes.append(code if code in "ACDEFGHIKLMNPQRSTVWY" else "")
        residues = "".join(codes)
        if len(residues) >= 2 and residues not in seen:
            seen.add(residues)
            out.append(Sequence(residues, name=f"{name} chain {chain.name}"))
    return out


def map_from_coefficients(refl: Reflections, f_label: str, phi_label: str, sampling: float = SAMPLING,
                          name: str | None = None) -> CrystalMap:
    """A whole-cell map from amplitude and phase (degrees) columns with gemmi's FFT.

    Grid spacing is about d_min / ``sampling`` Å (gemmi rounds the grid to FFT-friendly sizes that
    respect the space-group symmetry).
    """
    mtz = refl.mtz
    for label in (f_label, phi_label):
        if mtz.column_with_label(label) is None:
            raise CrysError(f"The MTZ file {refl.name} has no column '{label}'.")
    try:
        grid = mtz.transform_f_phi_to_map(f_label, phi_label, sample_rate=float(sampling))
    except Exception as exc:
        raise CrysError(f"Could not make a map from {f_label}/{phi_label} of {refl.name} ({exc}).") from None
    grid.spacegroup = mtz.spacegroup
    return CrystalMap(grid=grid, name=name or f"{refl.name} {f_label}/{phi_label}", units="")


def map_to_mtz(cmap: CrystalMap) -> gemmi.Mtz:
    """Structure factors (F, PHI in degrees) of a whole-cell map, to the grid's Nyquist resolution."""
    sf = gemmi.transform_map_to_f_phi(cmap.grid, half_l=True)
    d_min = 2.0 * max(cmap.spacing())
    data = sf.prepare_asu_data(dmin=d_min, with_000=False, with_sys_abs=False)
    values = np.asarray(data.value_array)
    return io.make_mtz(cmap.cell, cmap.spacegroup, np.asarray(data.miller_array),
                       {"F": ("F", np.abs(values)), "PHI": ("P", np.degrees(np.angle(values)))},
                       title=f"crysplugins: structure factors of {cmap.name}")


class DataTree(QTreeWidget):
    """The Data list: names and details share the width, so neither a long result name nor a long
    detail squeezes the other to nothing (long names are elided; the full name is the tooltip)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setHeaderLabels(["open data", "details"])
        self.header().setStretchLastSection(False)
        self.setTextElideMode(Qt.TextElideMode.ElideMiddle)

    def fit_columns(self) -> None:
        """Details get their text's width up to 45 % of the list; names get the rest."""
        width = self.viewport().width()
        details = max([self.sizeHintForColumn(1), self.header().sectionSizeHint(1)]) + 8
        details = min(details, int(0.45 * width))
        self.setColumnWidth(1, details)
        self.setColumnWidth(0, max(width - details, 40))

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        super().resizeEvent(event)
        self.fit_columns()


class MainWindow(QMainWindow):
    """The crysplugins desktop window (see the module docstring)."""

    documentsChanged = pyqtSignal()
    predictionAdded = pyqtSignal(str, object)

    def __init__(self, host: Any = None, settings: QSettings | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        if host is None:
            from crysplugins.host import default_host

            host = default_host()
        self.host = host
        self.settings = settings if settings is not None else default_settings()
        self.documents: list[Document] = []
        self.map_resolution: dict[int, float] = {}  # id of a map made from an MTZ -> that MTZ's d_min (Å)
        self.results: list[tuple[str, Prediction]] = []
        self.last_error_dialog: QMessageBox | None = None
        self.last_error: str | None = None
        self.last_column_dialog: ColumnDialog | None = None
        self.plugins_dialog: PluginsDialog | None = None
        self.dm_run: Any = None                 # the running density-modify child process, if any
        self.dm_messages: list[str] = []        # what the last density-modify run printed
        self.setWindowTitle("crysplugins")
        self.setAcceptDrops(True)
        self.resize(1400, 860)

        self.map_view = MapView()
        self.setCentralWidget(self.map_view)

        self.panel = PredictorPanel(host=host, context=self)
        self.panel.predictionFinished.connect(self.add_prediction)
        self.map_view.mapChanged.connect(lambda _cmap: self.panel.refresh_inputs())  # the shown map first
        for signal in (self.panel.predictionStarted, self.panel.predictionFinished, self.panel.predictionFailed,
                       self.panel.predictionCancelled):
            signal.connect(lambda *_args: self.statusBar().showMessage(self.panel.status.text()))
        self.panel_dock = self._dock("Predictors", self.panel, Qt.DockWidgetArea.RightDockWidgetArea)

        self.data_tree = DataTree()
        self.data_tree.itemDoubleClicked.connect(lambda item, _col: self._show_item(item))
        data_box = QWidget()
        box = QVBoxLayout(data_box)
        box.setContentsMargins(2, 2, 2, 2)
        box.addWidget(self.data_tree)
        buttons = QHBoxLayout()
        for text, slot in (("Show", self._show_selected), ("Compare", self._compare_selected),
                           ("Save…", self._save_selected)):
            b = QPushButton(text)
            b.setMinimumWidth(48)  # a narrow Data dock leaves the map its room
            b.clicked.connect(slot)
            buttons.addWidget(b)
        box.addLayout(buttons)
        self.data_dock = self._dock("Data", data_box, Qt.DockWidgetArea.LeftDockWidgetArea)

        self.results_tree = QTreeWidget()
        self.results_tree.setHeaderLabels(["result", "value", "unit / notes"])
        self.results_dock = self._dock("Results", self.results_tree, Qt.DockWidgetArea.BottomDockWidgetArea)
        # the side docks run the full height: the predictor form gets the room, Results sits under the map
        for corner, area in ((Qt.Corner.BottomRightCorner, Qt.DockWidgetArea.RightDockWidgetArea),
                             (Qt.Corner.TopRightCorner, Qt.DockWidgetArea.RightDockWidgetArea),
                             (Qt.Corner.BottomLeftCorner, Qt.DockWidgetArea.LeftDockWidgetArea),
                             (Qt.Corner.TopLeftCorner, Qt.DockWidgetArea.LeftDockWidgetArea)):
            self.setCorner(corner, area)
        self._docks_sized = False

        self._build_menus()
        self.statusBar().showMessage(f"{len(host.predictors)} predictors installed"
                                     + (f", {len(host.failures)} plugin failures (Plugins menu)" if host.failures else ""))

    def showEvent(self, event) -> None:  # noqa: N802 (Qt name)
        super().showEvent(event)
        if not self._docks_sized:
            self.size_docks()

    def size_docks(self) -> None:
        """Dock sizes in proportion to the window, so that a 1024×700 window still shows the map."""
        self._docks_sized = True
        w, h = self.width(), self.height()
        self.resizeDocks([self.data_dock, self.panel_dock], [max(170, int(0.19 * w)), max(300, int(0.29 * w))],
                         Qt.Orientation.Horizontal)
        self.resizeDocks([self.results_dock], [max(110, int(0.2 * h))], Qt.Orientation.Vertical)

    def _dock(self, title: str, widget: QWidget, area: Qt.DockWidgetArea) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(title)
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        return dock

    # ------------------------------------------------------------------ menus

    def _build_menus(self) -> None:
        m = self.menuBar().addMenu("&File")
        self._action(m, "&Open…", self._open_dialog, QKeySequence.StandardKey.Open)
        self.recent_menu = m.addMenu("Open &recent")
        self.recent_menu.aboutToShow.connect(self._fill_recent)
        m.addSeparator()
        self._action(m, "Save shown map as CCP4…", lambda: self._save_map_dialog("ccp4"), QKeySequence.StandardKey.Save)
        self._action(m, "Save shown map as MTZ (F, PHI)…", lambda: self._save_map_dialog("mtz"))
        self._action(m, "Save selected data…", self._save_selected)
        self._action(m, "Export view as PNG…", self._export_png_dialog)
        m.addSeparator()
        self._action(m, "&Quit", self.close, QKeySequence.StandardKey.Quit)
        v = self.menuBar().addMenu("&View")
        for dock in (self.data_dock, self.panel_dock, self.results_dock):
            v.addAction(dock.toggleViewAction())
        t = self.menuBar().addMenu("&Tools")
        self._action(t, "Density-modify reflections…", self._density_modify_dialog)
        p = self.menuBar().addMenu("&Plugins")
        self._action(p, "Installed plugins…", self.show_plugins)

    def _action(self, menu, text: str, slot, shortcut=None) -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(shortcut)
        action.triggered.connect(slot)
        menu.addAction(action)
        return action

    # ------------------------------------------------------------------ recent files

    def recent_files(self) -> list[str]:
        value = self.settings.value("recent_files", [])
        if isinstance(value, str):
            value = [value]
        return [str(v) for v in (value or [])]

    def _add_recent(self, path: str) -> None:
        path = str(Path(path).resolve())
        files = [p for p in self.recent_files() if p != path]
        self.settings.setValue("recent_files", [path] + files[:MAX_RECENT - 1])
        self.settings.sync()

    def _fill_recent(self) -> None:
        self.recent_menu.clear()
        files = self.recent_files()
        if not files:
            self.recent_menu.addAction("(none)").setEnabled(False)
        for path in files:
            self.recent_menu.addAction(path, lambda p=path: self.open_path(p))

    # ------------------------------------------------------------------ opening

    def _open_dialog(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(self, "Open", "", OPEN_FILTER)
        for path in paths:
            self.open_path(path)

    def dragEnterEvent(self, event) -> None:  # noqa: N802
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:  # noqa: N802
        for url in event.mimeData().urls():
            if url.isLocalFile():
                self.open_path(url.toLocalFile())
        event.acceptProposedAction()

    def open_path(self, path: str | Path, ask_columns: bool = True,
                  columns: dict[str, str] | None = None) -> Document | None:
        """Open a file of any supported kind; errors go to a message box and return None."""
        path = str(path)
        try:
            kind = file_kind(path)
            if kind == "map":
                cmap = load_input(InputSpec("map", Kind.MAP, ""), path)
                doc = self.add_map(cmap, path)
            elif kind == "mtz":
                doc = self.open_mtz(path, ask_columns=ask_columns, columns=columns)
            elif kind == "structure":
                doc = self.open_structure(path)
            else:
                seq = load_input(InputSpec("sequence", Kind.SEQUENCE, ""), path)
                doc = self._add_document(Document("sequence", seq.name, seq, path))
        except CrysError as exc:
            self.error("Could not open the file", str(exc))
            return None
        self._add_recent(path)
        self.statusBar().showMessage(f"opened {path}")
        return doc

    def open_structure(self, path: str) -> Document:
        """Open a model: draw it on the slices and offer its chains' sequences to the predictors."""
        st = load_input(InputSpec("structure", Kind.STRUCTURE, ""), path)
        name = Path(path).name
        self.map_view.set_model(st, name)
        for seq in chain_sequences(st, name):
            self._add_document(Document("sequence", seq.name, seq, path))
        return self._add_document(Document("structure", name, st, path))

    def open_mtz(self, path: str, ask_columns: bool = True,
                 columns: dict[str, str] | None = None) -> Document:
        """Open an MTZ; when it has amplitude + phase columns, also make a map (after a column dialog)."""
        spec = InputSpec("reflections", Kind.REFLECTIONS, "", columns=("F?", "SIGF?", "FWT?", "PHI?", "FOM?"))
        refl = load_input(spec, path, columns or None)
        doc = self._add_document(Document("reflections", Path(path).name, refl, path))
        defaults = {}
        amp = (columns or {}).get("F") or refl.columns.get("FWT") or refl.columns.get("F")
        if amp:
            defaults["F"] = amp
        if refl.columns.get("PHI"):
            defaults["PHI"] = refl.columns["PHI"]
        has_phases = any(c.type == "P" for c in refl.mtz.columns)
        if ask_columns and has_phases:
            dialog = ColumnDialog(refl, ("F", "PHI"), defaults, title=f"Map from {Path(path).name}",
                                  sampling=SAMPLING, parent=self)
            dialog.accepted.connect(lambda: self._map_from_dialog(refl, dialog))
            dialog.open()
            self.last_column_dialog = dialog
        elif "F" in defaults and "PHI" in defaults:
            self.add_map(map_from_coefficients(refl, defaults["F"], defaults["PHI"], SAMPLING,
                                               name=f"{Path(path).stem} {defaults['F']}"), d_min=refl.d_min)
        return doc

    def _map_from_dialog(self, refl: Reflections, dialog: ColumnDialog) -> None:
        chosen = dialog.columns()
        if "F" not in chosen or "PHI" not in chosen:
            self.statusBar().showMessage(f"{refl.name}: no amplitude/phase pair chosen, no map made")
            return
        try:
            cmap = map_from_coefficients(refl, chosen["F"], chosen["PHI"], dialog.sampling(),
                                         name=f"{refl.name} {chosen['F']}")
        except CrysError as exc:
            self.error("Could not make a map", str(exc))
            return
        self.add_map(cmap, d_min=refl.d_min)

    def add_map(self, cmap: CrystalMap, path: str | None = None, show: bool = True,
                d_min: float | None = None) -> Document:
        """Add a map; ``d_min`` (Å) is the resolution of the MTZ it was calculated from, if any."""
        if d_min is not None:
            self.map_resolution[id(cmap)] = float(d_min)
        self.map_view.add_map(cmap, show=show)
        return self._add_document(Document("map", cmap.name, cmap, path))

    def _add_document(self, doc: Document) -> Document:
        self.documents.append(doc)
        self._refresh_data_tree()
        self.panel.refresh_inputs()
        self.documentsChanged.emit()
        return doc

    # ------------------------------------------------------------------ context for the panel

    def items_for(self, spec: InputSpec) -> list[tuple[str, Any]]:
        """Like :meth:`items`; a ``resolution`` input also gets the resolution of the MTZ the shown map
        was calculated from."""
        if spec.kind is Kind.FLOAT and spec.name == "resolution":
            current = self.map_view.current
            d_min = self.map_resolution.get(id(current)) if current is not None else None
            if d_min is None:
                return []
            text = f"{d_min:.2f}"
            return [(text, text)]
        return self.items(spec.kind)

    def items(self, kind: Kind) -> list[tuple[str, Any]]:
        """Open objects for a predictor input of ``kind``, the shown map (and its MTZ) first."""
        current = self.map_view.current
        if kind in (Kind.MAP, Kind.MASK):
            maps = [d for d in self.documents if d.kind == "map"]
            maps.sort(key=lambda d: d.obj is not current)
            return [(d.name, d.obj) for d in maps]
        if kind is Kind.REFLECTIONS:
            # MTZ files are passed by path so that load_input picks the columns each predictor needs
            return [(d.name, d.path if d.path else d.obj) for d in reversed(self.documents) if d.kind == "reflections"]
        if kind is Kind.STRUCTURE:
            return [(d.name, d.obj) for d in reversed(self.documents) if d.kind == "structure"]
        if kind is Kind.SEQUENCE:  # sequence files first, then those read from models
            seqs = [d for d in reversed(self.documents) if d.kind == "sequence"]
            seqs.sort(key=lambda d: file_kind(d.path) == "structure" if d.path else False)
            return [(d.name, d.obj) for d in seqs]
        source = current
        if source is None:
            refl = [d.obj for d in reversed(self.documents) if d.kind == "reflections"]
            source = refl[0] if refl else None
        if source is None:
            return []
        if kind is Kind.CELL:
            text = " ".join(f"{x:g}" for x in source.cell.parameters)
            return [(text, text)]
        if kind is Kind.SPACEGROUP and source.spacegroup is not None:
            return [(source.spacegroup.hm, source.spacegroup.hm)]
        return []

    # ------------------------------------------------------------------ results

    def add_prediction(self, name: str, prediction: Prediction) -> None:
        """Add a prediction's maps to the view (overlaid on the shown map) and its numbers to Results."""
        self.results.append((name, prediction))
        shown = self.map_view.current
        for i in range(self.results_tree.topLevelItemCount()):
            self.results_tree.topLevelItem(i).setExpanded(False)  # the newest result is the one shown open
        top = QTreeWidgetItem([f"{name} #{len(self.results)}", "", str(prediction.meta.get("model", ""))])
        self.results_tree.addTopLevelItem(top)
        for msg in prediction.messages:
            item = QTreeWidgetItem(top, [msg, "", ""])
            item.setFirstColumnSpanned(True)
        for key, s in prediction.scalars.items():
            item = QTreeWidgetItem(top, [key, f"{s.value:.4g}", "   ".join(x for x in (s.unit, s.help) if x)])
            item.setToolTip(0, s.help)
        first_map = None
        for key, cmap in prediction.maps.items():
            cmap.name = f"{name} {key}"
            self.add_map(cmap, show=False)
            first_map = first_map or cmap
            QTreeWidgetItem(top, [key, "map", " ".join(str(n) for n in cmap.shape) + " grid"])
        for key, refl in prediction.reflections.items():
            refl.name = f"{name} {key}"
            self._add_document(Document("reflections", refl.name, refl))
            QTreeWidgetItem(top, [key, "reflections", f"{refl.mtz.nreflections} reflections"])
        for key, table in prediction.tables.items():
            doc = self._add_document(Document("table", f"{name} {key}", table))
            t_item = QTreeWidgetItem(top, [key, "table", table.help])
            t_item.setToolTip(0, table.help)
            t_item.setData(0, Qt.ItemDataRole.UserRole, doc)
            head = QTreeWidgetItem(t_item, [table.columns[0], "   ".join(table.columns[1:]), ""])
            font = head.font(0)
            font.setItalic(True)
            head.setFont(0, font)
            head.setFont(1, font)
            for row in table.rows:
                cells = [f"{v:.4g}" if isinstance(v, float) else "-" if v is None else str(v) for v in row]
                QTreeWidgetItem(t_item, [cells[0], "   ".join(cells[1:]), ""])
            t_item.setExpanded(True)
        top.setExpanded(True)
        self.results_tree.scrollToItem(top)
        self.results_tree.resizeColumnToContents(0)
        self.results_tree.setColumnWidth(0, max(self.results_tree.columnWidth(0), 180))
        self.results_tree.setColumnWidth(1, max(self.results_tree.columnWidth(1), 360))
        entry = self.host.predictors.get(name)
        mask_names = {o.name for o in entry.predictor.outputs if o.kind is Kind.MASK} if entry else set()
        masks = [cmap for key, cmap in prediction.maps.items() if key in mask_names]
        first_map = masks[0] if masks else first_map  # a mask overlays best on the density it came from
        if first_map is not None:
            if shown is not None and first_map.cell.approx(shown.cell, 1e-3):
                self.map_view.set_second(first_map)
            else:
                self.map_view.show_map(first_map)
        self.predictionAdded.emit(name, prediction)

    # ------------------------------------------------------------------ data tree

    def _refresh_data_tree(self) -> None:
        self.data_tree.clear()
        groups = {}
        for kind, title in (("map", "Maps"), ("reflections", "Reflections"), ("structure", "Structures"),
                            ("sequence", "Sequences"), ("table", "Tables")):
            groups[kind] = QTreeWidgetItem(self.data_tree, [title, ""])
        for doc in self.documents:
            item = QTreeWidgetItem(groups[doc.kind], [doc.name, self._details(doc)])
            item.setData(0, Qt.ItemDataRole.UserRole, doc)
            item.setToolTip(0, doc.path or doc.name)
        for g in groups.values():
            g.setExpanded(True)
            g.setHidden(g.childCount() == 0)
        self.data_tree.fit_columns()

    @staticmethod
    def _details(doc: Document) -> str:
        if doc.kind == "map":
            return "×".join(str(n) for n in doc.obj.shape)
        if doc.kind == "reflections":
            return f"{doc.obj.mtz.nreflections} refl, {doc.obj.d_min:.2f} Å"
        if doc.kind == "structure":
            return f"{doc.obj[0].count_atom_sites()} atoms"
        if doc.kind == "sequence":
            return f"{len(doc.obj)} residues"
        if doc.kind == "table":
            return f"{len(doc.obj.rows)} rows"
        return ""

    def _selected_doc(self) -> Document | None:
        item = self.data_tree.currentItem()
        return item.data(0, Qt.ItemDataRole.UserRole) if item is not None else None

    def _show_item(self, item: QTreeWidgetItem) -> None:
        doc = item.data(0, Qt.ItemDataRole.UserRole)
        if doc is not None and doc.kind == "map":
            self.map_view.show_map(doc.obj)

    def _show_selected(self) -> None:
        doc = self._selected_doc()
        if doc is not None and doc.kind == "map":
            self.map_view.show_map(doc.obj)

    def _compare_selected(self) -> None:
        doc = self._selected_doc()
        if doc is not None and doc.kind == "map":
            self.map_view.set_second(doc.obj)

    # ------------------------------------------------------------------ saving

    def save_document(self, doc: Document, path: str | Path) -> Path:
        """Write a map (.ccp4/.map/.mrc, or .mtz), reflections (.mtz) or a table (.tsv), atomically."""
        path = Path(path)
        if doc.kind == "map":
            if path.suffix.lower() == ".mtz":
                return io.write_mtz(map_to_mtz(doc.obj), path)
            return io.write_map(doc.obj, path)
        if doc.kind == "reflections":
            return io.write_mtz(doc.obj.mtz, path)
        if doc.kind == "table":
            with io.atomic_path(path) as tmp:
                tmp.write_text(doc.obj.to_tsv())
            return path
        raise CrysError(f"{doc.name} cannot be saved from here (only maps, reflections and tables).")

    def save_map(self, cmap: CrystalMap, path: str | Path) -> Path:
        return self.save_document(Document("map", cmap.name, cmap), path)

    def export_png(self, path: str | Path, widget: QWidget | None = None) -> Path:
        """Save a PNG of the map view (or ``widget``), atomically."""
        pixmap = (widget or self.map_view).grab()
        path = Path(path)
        with io.atomic_path(path) as tmp:
            if not pixmap.save(str(tmp), "PNG"):
                raise CrysError(f"Could not write the image {path}.")
        return path

    def _save_map_dialog(self, fmt: str) -> None:
        cmap = self.map_view.current
        if cmap is None:
            self.error("Nothing to save", "Open a map or run a predictor first.")
            return
        filt = "MTZ (*.mtz)" if fmt == "mtz" else "CCP4 maps (*.ccp4 *.map *.mrc)"
        path, _ = QFileDialog.getSaveFileName(self, "Save map", f"{cmap.name.replace(' ', '_')}.{fmt}", filt)
        if path:
            self._guarded_save(lambda: self.save_map(cmap, path))

    def _save_selected(self) -> None:
        doc = self._selected_doc()
        if doc is None:
            self.error("Nothing selected", "Select a map, reflections or a table in the Data list first.")
            return
        ext = {"map": "ccp4", "reflections": "mtz", "table": "tsv"}.get(doc.kind, "")
        path, _ = QFileDialog.getSaveFileName(self, f"Save {doc.name}", f"{doc.name.replace(' ', '_')}.{ext}")
        if path:
            self._guarded_save(lambda: self.save_document(doc, path))

    def _export_png_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export view", "view.png", "PNG (*.png)")
        if path:
            self._guarded_save(lambda: self.export_png(path))

    def _guarded_save(self, fn) -> None:
        try:
            out = fn()
        except CrysError as exc:
            self.error("Could not save", str(exc))
            return
        except OSError as exc:
            self.error("Could not save", f"The file could not be written ({exc.strerror or exc}).")
            return
        self.statusBar().showMessage(f"wrote {out}")

    # ------------------------------------------------------------------ density modification

    def _reflections_for_dm(self) -> Document | None:
        """The selected reflections, else the newest opened MTZ file."""
        doc = self._selected_doc()
        if doc is not None and doc.kind == "reflections" and doc.path:
            return doc
        return next((d for d in reversed(self.documents) if d.kind == "reflections" and d.path), None)

    def _density_modify_dialog(self) -> None:
        from PyQt6.QtWidgets import QInputDialog

        doc = self._reflections_for_dm()
        sequence = next((d.obj for d in reversed(self.documents) if d.kind == "sequence"), None)
        fraction = None
        if doc is not None and sequence is None:
            fraction, ok = QInputDialog.getDouble(self, "Density modification", "Solvent fraction (0–1):",
                                                  0.5, 0.01, 0.99, 3)
            if not ok:
                return
        self.density_modify(doc, fraction, sequence)

    def density_modify(self, doc: Document | None, solvent_fraction: float | None = None,
                       sequence: Sequence | None = None, extra: list[str] | None = None) -> Any:
        """Run ``crysplugins density-modify`` on an opened MTZ; the map and MTZ come back as documents."""
        from crysplugins.gui.density_modify import start_density_modify

        if doc is None:
            self.error("No reflections", "Open an MTZ file with amplitudes and experimental phases "
                                         "(PHIB/FOM or HL) first.")
            return None
        if solvent_fraction is None and sequence is None:
            self.error("No solvent content", "Density modification needs a solvent fraction or a sequence.")
            return None
        self.statusBar().showMessage(f"density-modifying {doc.name} …")
        self.dm_run = start_density_modify(doc.path, solvent_fraction, sequence, self._density_modify_done,
                                           lambda msg: self.error("Density modification failed", msg),
                                           parent=self, extra=extra)
        return self.dm_run

    def _density_modify_done(self, out_dir: str, stdout: str) -> None:
        out = Path(out_dir)
        cmap = io.read_map(out / "density_modified.ccp4")
        cmap.name = "density-modified"
        mtz = str(out / "density_modified.mtz")
        refl = load_input(InputSpec("reflections", Kind.REFLECTIONS, ""), mtz, {"F": "FWT", "PHI": "PHWT"})
        self.add_map(cmap, str(out / "density_modified.ccp4"), d_min=refl.d_min)
        self._add_document(Document("reflections", "density_modified.mtz", refl, mtz))
        self.dm_messages = [x for x in stdout.splitlines() if x.strip()]
        solvent = next((x for x in self.dm_messages if x.startswith("solvent fraction")), "")
        self.statusBar().showMessage(f"density-modify finished ({solvent}); files in {out}")

    # ------------------------------------------------------------------ misc

    def error(self, title: str, message: str) -> QMessageBox:
        self.last_error = message
        self.statusBar().showMessage(message)
        self.last_error_dialog = show_error(self, title, message)
        return self.last_error_dialog

    def show_plugins(self) -> PluginsDialog:
        self.plugins_dialog = PluginsDialog(self.host, self)
        self.plugins_dialog.open()
        return self.plugins_dialog

    def closeEvent(self, event) -> None:  # noqa: N802
        if self.dm_run is not None:
            self.dm_run.stop()
        self.panel.shutdown()
        super().closeEvent(event)
