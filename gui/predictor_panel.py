"""The predictor panel: a reusable Qt widget that lists installed predictors and runs one.

It knows predictors only through the host and the common interface: the list comes from ``host.predictors``,
the form is built from each predictor's declared :class:`~crysplugins.interface.InputSpec` s, values are loaded
with :func:`crysplugins.inputs.load_input` (on the worker thread), and results come back as a
:class:`~crysplugins.interface.Prediction` through the ``predictionFinished`` signal.  Any Qt host can embed it::

    panel = PredictorPanel(host=default_host(), context=my_context)
    panel.predictionFinished.connect(lambda name, prediction: ...)

``context`` (optional) pre-fills the form: an object with ``items(kind) -> list[(label, value)]`` giving the
open maps, reflections (MTZ paths), structures, sequences, and the cell / space group of the shown map,
current first.  Form widgets by kind: MAP/MASK/REFLECTIONS/STRUCTURE/SEQUENCE -> an editable list of open
objects plus a file picker (REFLECTIONS also a column-choice dialog); CELL/SPACEGROUP/FLOAT/INT/TEXT -> text
fields; BOOL -> a check box; CHOICE -> a list.
"""
from __future__ import annotations

import re
from typing import Any, Protocol

from PyQt6.QtCore import Qt, QThreadPool, pyqtSignal
from PyQt6.QtWidgets import (QCheckBox, QComboBox, QFileDialog, QFormLayout, QHBoxLayout, QLabel, QLineEdit,
                             QListWidget, QListWidgetItem, QProgressBar, QPushButton, QScrollArea, QToolButton,
                             QVBoxLayout, QWidget)

from crysplugins.errors import CrysError
from crysplugins.inputs import input_flags, load_input
from crysplugins.interface import InputSpec, Kind, Prediction, Reflections
from crysplugins.gui.dialogs import ColumnDialog, show_error
from crysplugins.gui.worker import PredictionWorker, RawInput

NONE_ITEM = "(none)"

FILE_FILTERS = {
    Kind.MAP: "Maps (*.ccp4 *.map *.mrc *.ccp4.gz *.map.gz *.mrc.gz);;All files (*)",
    Kind.MASK: "Maps (*.ccp4 *.map *.mrc);;All files (*)",
    Kind.REFLECTIONS: "MTZ files (*.mtz);;All files (*)",
    Kind.STRUCTURE: "Coordinates (*.pdb *.ent *.cif *.mmcif *.pdb.gz *.cif.gz);;All files (*)",
    Kind.SEQUENCE: "Sequences (*.fasta *.fa *.seq *.pir *.txt);;All files (*)",
}
OBJECT_KINDS = (Kind.MAP, Kind.MASK, Kind.REFLECTIONS, Kind.STRUCTURE, Kind.SEQUENCE)
#: form rows the scroll area shows without scrolling when the window has the room
VISIBLE_ROWS = 8


def field_label(name: str) -> str:
    """The form's label of an input: its name with spaces ('molecular_weight' -> 'molecular weight')."""
    return name.replace("_", " ")


def gui_wording(message: str, specs) -> str:
    """A command-line message in the form's words: flags and input names become the labels of the form
    ('--molecular-weight' -> '"molecular weight"'), column choices point at the "cols" button."""
    specs = list(specs)
    flags = input_flags(specs)
    for spec in sorted(specs, key=lambda s: -len(s.name)):
        label = field_label(spec.name)
        for flag in dict.fromkeys(("--" + flags[spec.name], "--" + spec.name.replace("_", "-"))):
            message = message.replace(f"{flag}-columns", f'the "cols" button of "{label}"')
            message = re.sub(re.escape(flag) + r"(?![\w-])", f'"{label}"', message)
        message = message.replace(f"'{spec.name}'", f'"{label}"')
        if "_" in spec.name:  # a bare input name in a list ("needs one of: sequence, molecular_weight")
            message = re.sub(r"(?<![\w/.-])" + re.escape(spec.name) + r"(?![\w/-])", label, message)
    message = re.sub(r"--(reflections-)?columns\b", 'the "cols" button next to the MTZ file', message)
    return message


class PanelContext(Protocol):
    """What the host window offers to pre-fill the form."""

    def items(self, kind: Kind) -> list[tuple[str, Any]]: ...

    # optional: ``items_for(spec) -> list[(label, value)]`` fills an input by its name as well


class InputField:
    """One row of the form: a widget for one InputSpec and how to read its value."""

    def __init__(self, spec: InputSpec, panel: "PredictorPanel") -> None:
        self.spec = spec
        self.panel = panel
        self.columns: dict[str, str] | None = None
        self.widget = QWidget()
        row = QHBoxLayout(self.widget)
        row.setContentsMargins(0, 0, 0, 0)
        self.combo: QComboBox | None = None
        self.line: QLineEdit | None = None
        self.check: QCheckBox | None = None
        self._auto = True
        kind = spec.kind
        tip = spec.help + (f" [{spec.unit}]" if spec.unit else "")
        if kind in OBJECT_KINDS:
            self.combo = QComboBox()
            self.combo.setEditable(True)
            self.combo.setMinimumContentsLength(6)
            self.combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            self.combo.lineEdit().setPlaceholderText("file path" + (" or one-letter sequence" if kind is Kind.SEQUENCE else ""))
            row.addWidget(self.combo, 1)
            self.combo.activated.connect(lambda _i: self._edited(""))
            self.combo.lineEdit().textEdited.connect(self._edited)
            browse = QToolButton()
            browse.setText("…")
            browse.setToolTip("choose a file")
            browse.clicked.connect(self._browse)
            row.addWidget(browse)
            if kind is Kind.REFLECTIONS:
                self.columns_button = QToolButton()
                self.columns_button.setText("cols")
                self.columns_button.setToolTip("choose the MTZ columns for " + ", ".join(spec.columns))
                self.columns_button.clicked.connect(self.open_column_dialog)
                row.addWidget(self.columns_button)
        elif kind is Kind.BOOL:
            self.check = QCheckBox()
            self.check.setChecked(bool(spec.default))
            row.addWidget(self.check)
        elif kind is Kind.CHOICE:
            self.combo = QComboBox()
            if not spec.required and spec.default is None:
                self.combo.addItem("")
            self.combo.addItems(list(spec.choices))
            if spec.default is not None:
                self.combo.setCurrentText(str(spec.default))
            row.addWidget(self.combo, 1)
        else:
            self.line = QLineEdit()
            if spec.default is not None:
                self.line.setText(str(spec.default))
            self.line.setPlaceholderText("required" if spec.required else ("optional" if not spec.group else f"or another {spec.group} input"))
            self.line.textEdited.connect(self._edited)
            row.addWidget(self.line, 1)
            if spec.unit:
                row.addWidget(QLabel(spec.unit))
        self.widget.setToolTip(tip)
        self.column_dialog: ColumnDialog | None = None

    def _edited(self, _text: str) -> None:
        self._auto = False

    # -------------------------------------------------------------- values

    def value(self) -> RawInput | None:
        spec = self.spec
        if self.check is not None:
            return RawInput(spec, self.check.isChecked())
        if self.line is not None:
            text = self.line.text().strip()
            return RawInput(spec, text) if text else None
        assert self.combo is not None
        if spec.kind is Kind.CHOICE:
            text = self.combo.currentText()
            return RawInput(spec, text) if text else None
        text = self.combo.currentText().strip()
        idx = self.combo.currentIndex()
        if idx >= 0 and self.combo.itemText(idx) == text:
            data = self.combo.itemData(idx)
            if data is None:
                return None
            if isinstance(data, Reflections) and self.columns:
                data = Reflections(mtz=data.mtz, columns=dict(self.columns), name=data.name)
            return RawInput(spec, data, self.columns)
        return RawInput(spec, text, self.columns) if text else None

    def set_value(self, value: Any) -> None:
        """Set the field from a string, bool or object (objects are added to the list)."""
        if self.check is not None:
            self.check.setChecked(bool(value))
        elif self.line is not None:
            self.line.setText("" if value is None else str(value))
            self._auto = False
        elif self.combo is not None:
            self._auto = False
            if value is None:
                idx = self.combo.findText(NONE_ITEM)
                if idx >= 0:
                    self.combo.setCurrentIndex(idx)
                else:
                    self.combo.setEditText("")
            elif isinstance(value, str):
                idx = self.combo.findText(value)
                if idx >= 0:
                    self.combo.setCurrentIndex(idx)
                else:
                    self.combo.setEditText(value)
            else:
                label = getattr(value, "name", type(value).__name__)
                self.combo.insertItem(0, label, value)
                self.combo.setCurrentIndex(0)

    # -------------------------------------------------------------- context

    def has_value(self) -> bool:
        return self.value() is not None

    def refresh(self, context: PanelContext | None, allow: bool = True) -> None:
        """Re-read the open objects; ``allow=False`` leaves an untouched field empty (another member of
        its input group is already filled: a group lists alternatives)."""
        items = []
        if context is not None and allow:
            by_spec = getattr(context, "items_for", None)  # a context may also fill in by input name
            items = by_spec(self.spec) if by_spec is not None else context.items(self.spec.kind)
        if not allow and self._auto:
            if self.line is not None:
                self.line.clear()
            elif self.combo is not None and self.spec.kind in OBJECT_KINDS:
                self.combo.clear()
                if not self.spec.required:
                    self.combo.addItem(NONE_ITEM, None)
            return
        if self.line is not None:
            if self._auto and items:
                self.line.setText(str(items[0][0]))
                self.line.setCursorPosition(0)
            return
        if self.combo is None or self.spec.kind not in OBJECT_KINDS:
            return
        old_labels = [self.combo.itemText(i) for i in range(self.combo.count())]
        current = self.combo.currentText()
        typed = current and current not in old_labels
        self.combo.blockSignals(True)
        self.combo.clear()
        for label, data in items:
            self.combo.addItem(label, data)
        if not self.spec.required:
            self.combo.addItem(NONE_ITEM, None)
        if typed:
            self.combo.setEditText(current)
        elif current and current in [label for label, _ in items]:
            self.combo.setCurrentIndex(self.combo.findText(current))
        else:
            self.combo.setCurrentIndex(0 if self.combo.count() else -1)
        self.combo.blockSignals(False)
        if self.combo.lineEdit() is not None:
            self.combo.lineEdit().setCursorPosition(0)

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self.widget, f"{field_label(self.spec.name)}: {self.spec.help}", "",
                                              FILE_FILTERS.get(self.spec.kind, "All files (*)"))
        if path:
            self.combo.setEditText(path)
            self.columns = None
            self._auto = False

    # -------------------------------------------------------------- MTZ columns

    def _reflections_for_dialog(self) -> Reflections:
        """The chosen reflections with automatic column picks for this input's roles."""
        item = self.value()
        if item is None:
            raise CrysError(f'Choose an MTZ file for "{field_label(self.spec.name)}" first.')
        value = item.value
        if isinstance(value, Reflections):
            return value
        optional_spec = InputSpec(self.spec.name, Kind.REFLECTIONS, self.spec.help,
                                  columns=tuple(r if r.endswith("?") else r + "?" for r in self.spec.columns))
        return load_input(optional_spec, str(value))

    def open_column_dialog(self) -> ColumnDialog | None:
        """Show the column-choice dialog (non-blocking); its OK stores the choice for this input."""
        try:
            refl = self._reflections_for_dialog()
        except CrysError as exc:
            self.panel._error(str(exc))
            return None
        roles = self.spec.columns or ("F", "SIGF?", "PHI?", "FOM?")
        defaults = dict(refl.columns)
        if self.columns:
            defaults.update(self.columns)
        dialog = ColumnDialog(refl, roles, defaults, title=f"{field_label(self.spec.name)}: MTZ columns", parent=self.widget)
        dialog.accepted.connect(lambda: setattr(self, "columns", dialog.columns()))
        dialog.open()
        self.column_dialog = dialog
        return dialog


class PredictorPanel(QWidget):
    """List of predictors, a form for the chosen one, Run / Cancel, a progress bar and a status line."""

    predictionStarted = pyqtSignal(str)
    progressChanged = pyqtSignal(float, str)
    predictionFinished = pyqtSignal(str, object)   # predictor name, Prediction
    predictionFailed = pyqtSignal(str, str)        # predictor name, message
    predictionCancelled = pyqtSignal(str)
    runDone = pyqtSignal()

    def __init__(self, host: Any = None, context: PanelContext | None = None, parent: QWidget | None = None,
                 show_error_dialogs: bool = True) -> None:
        super().__init__(parent)
        if host is None:
            from crysplugins.host import default_host

            host = default_host()
        self.host = host
        self.context = context
        self.show_error_dialogs = show_error_dialogs
        self.fields: dict[str, InputField] = {}
        self.worker: PredictionWorker | None = None
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(1)
        self.last_prediction: Prediction | None = None
        self.last_error: str | None = None
        self.last_error_dialog = None
        self.last_seconds: float | None = None
        self._running_name = ""
        self.last_worker: PredictionWorker | None = None
        self._cancel_requested = False

        self.list = QListWidget()
        for entry in sorted(host.predictors.values(), key=lambda e: e.predictor.name):
            p = entry.predictor
            item = QListWidgetItem(f"{p.name}  {p.version}")
            item.setToolTip(f"{p.summary}\nplugin {entry.plugin} ({entry.distribution})")
            item.setData(Qt.ItemDataRole.UserRole, p.name)
            self.list.addItem(item)
        rows = min(max(self.list.count(), 1), 6)  # one line per predictor: the form below gets the room
        self.list.setFixedHeight(rows * max(self.list.sizeHintForRow(0), 1) + 2 * self.list.frameWidth() + 2)
        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        self.form_host = QWidget()
        self.form = QFormLayout(self.form_host)
        self.form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        self.scroll = scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setWidget(self.form_host)
        self.run_button = QPushButton("Run")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setValue(0)
        self.progress.setTextVisible(False)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        if not host.predictors:  # the dock's title says "Predictors" already
            layout.addWidget(QLabel("No predictors are installed."))
        layout.addWidget(self.list)
        layout.addWidget(self.summary)
        layout.addWidget(scroll, 1)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)

        self.list.currentRowChanged.connect(self._row_changed)
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)
        self.run_button.setEnabled(bool(host.predictors))
        if self.list.count():
            self.list.setCurrentRow(0)

    # -------------------------------------------------------------- selection and form

    @property
    def predictor(self) -> Any:
        item = self.list.currentItem()
        return self.host.get(item.data(Qt.ItemDataRole.UserRole)) if item is not None else None

    def names(self) -> list[str]:
        return [self.list.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.list.count())]

    def select(self, name: str) -> None:
        """Select a predictor by name (CrysError when it is not installed)."""
        self.host.get(name)
        self.list.setCurrentRow(self.names().index(name))

    def _row_changed(self, _row: int) -> None:
        if not self.running:  # the last run's status belongs to the predictor that ran
            self.status.setText("")
            self.progress.setValue(0)
        self._build_form()

    def _build_form(self) -> None:
        while self.form.rowCount():
            self.form.removeRow(0)
        self.fields = {}
        p = self.predictor
        if p is None:
            return
        outputs = ", ".join(f"{field_label(o.name)} ({o.kind.value})" for o in p.outputs)
        self.summary.setText(f"<b>{p.name}</b>: {p.summary}")
        self.summary.setToolTip(f"{p.name} {p.version}\noutputs: {outputs}")
        for spec in p.inputs:
            field = InputField(spec, self)
            label = field_label(spec.name) + (" *" if spec.required else "")
            label_widget = QLabel(label)
            label_widget.setToolTip(spec.help + (f" ({spec.unit})" if spec.unit else "")
                                    + (f"; one of the '{spec.group}' inputs" if spec.group else ""))
            self.form.addRow(label_widget, field.widget)
            self.fields[spec.name] = field
        self.refresh_inputs()
        self._fit_form()

    def _fit_form(self) -> None:
        """Let the form show up to VISIBLE_ROWS rows before it scrolls (the dock gives the room)."""
        self.form_host.adjustSize()
        rows = max(self.form.rowCount(), 1)
        per_row = self.form_host.sizeHint().height() / rows
        self.scroll.setMinimumHeight(int(min(rows, VISIBLE_ROWS) * per_row) + 2 * self.scroll.frameWidth())

    def field(self, name: str) -> InputField:
        return self.fields[name]

    def set_value(self, name: str, value: Any) -> None:
        self.fields[name].set_value(value)

    def set_context(self, context: PanelContext | None) -> None:
        self.context = context
        self.refresh_inputs()

    def refresh_inputs(self) -> None:
        """Re-read the context (after files were opened or results added)."""
        filled: set[str] = set()
        for field in self.fields.values():  # declaration order: the first member of a group wins
            group = field.spec.group
            field.refresh(self.context, allow=not (group and group in filled and field._auto))
            if group and field.has_value():
                filled.add(group)

    # -------------------------------------------------------------- running

    @property
    def running(self) -> bool:
        return self.worker is not None

    def raw_inputs(self) -> dict[str, RawInput]:
        out = {}
        for name, field in self.fields.items():
            value = field.value()
            if value is not None:
                out[name] = value
        return out

    def run(self) -> PredictionWorker | None:
        """Start the selected predictor on the pool thread; returns the worker (None if not started)."""
        p = self.predictor
        if p is None or self.running:
            return None
        worker = PredictionWorker(p, self.raw_inputs())
        worker.signals.progress.connect(self._on_progress)
        worker.signals.finished.connect(self._on_finished)
        worker.signals.failed.connect(self._on_failed)
        worker.signals.cancelled.connect(self._on_cancelled)
        worker.signals.done.connect(self._on_done)
        self.worker = worker
        self._cancel_requested = False
        self._running_name = p.name
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.list.setEnabled(False)
        self.progress.setValue(0)
        self.status.setText(f"running {p.name}…")
        self.predictionStarted.emit(p.name)
        self.pool.start(worker)
        return worker

    def cancel(self) -> None:
        if self.worker is not None:
            self.worker.cancel()
            self._cancel_requested = True
            self.cancel_button.setEnabled(False)
            self.status.setText(f"cancelling {self._running_name}…")

    def wait(self, msecs: int = 30000) -> bool:
        """Block until the worker thread is idle (for shutdown; signals still need the event loop)."""
        return self.pool.waitForDone(msecs)

    def shutdown(self, msecs: int = 10000) -> None:
        self.cancel()
        self.wait(msecs)

    def _on_progress(self, fraction: float, message: str) -> None:
        if self._cancel_requested:  # reports still queued from before the predictor saw the cancel
            return
        self.progress.setValue(int(round(fraction * 1000)))
        self.status.setText(f"{self._running_name}: {fraction:.0%} {message}")
        self.progressChanged.emit(fraction, message)

    def _on_finished(self, prediction: Prediction) -> None:
        if self._cancel_requested:  # finished before it saw the cancel: the user asked for no result
            self._on_cancelled()
            return
        self.last_prediction = prediction
        self.last_seconds = self.worker.seconds if self.worker else None
        self.progress.setValue(1000)
        parts = [f"{field_label(k)} = {v.value:.4g}{(' ' + v.unit) if v.unit else ''}" for k, v in prediction.scalars.items()]
        parts += [f"map {field_label(k)}" for k in prediction.maps]
        parts += [f"table {field_label(k)}" for k in prediction.tables]
        self.status.setText(f"{self._running_name} done in {self.last_seconds or 0:.2f} s: " + "; ".join(parts))
        self.predictionFinished.emit(self._running_name, prediction)

    def _on_failed(self, message: str, details: str) -> None:
        p = self.host.get(self._running_name) if self._running_name in self.host.predictors else None
        message = gui_wording(message, p.inputs if p is not None else ())
        self.last_error = message
        self.status.setText(f"{self._running_name} failed: {message}")
        self.progress.setValue(0)
        if self.show_error_dialogs:
            self.last_error_dialog = show_error(self.window(), f"{self._running_name} failed", message, details)
        self.predictionFailed.emit(self._running_name, message)

    def _error(self, message: str) -> None:
        self.last_error = message
        self.status.setText(message)
        if self.show_error_dialogs:
            self.last_error_dialog = show_error(self.window(), "crysplugins", message)

    def _on_cancelled(self) -> None:
        self.status.setText(f"{self._running_name} cancelled")
        self.progress.setValue(0)
        self.predictionCancelled.emit(self._running_name)

    def _on_done(self) -> None:
        self.last_worker = self.worker  # keep the runnable alive until its thread has surely returned
        self.worker = None
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        self.list.setEnabled(True)
        self.runDone.emit()
