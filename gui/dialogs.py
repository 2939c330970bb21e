"""Small dialogs: MTZ column choice, installed plugins (with failures), and non-blocking error boxes.

No dialog here is run with a blocking ``exec()`` by the app: each is shown with ``open()`` and reports
through its ``accepted`` signal, so the event loop (and tests) keep running.
"""
from __future__ import annotations

from typing import Any, Iterable

from PyQt6.QtCore import Qt
from PyQt6.QtGui import QColor
from PyQt6.QtWidgets import (QComboBox, QDialog, QDialogButtonBox, QDoubleSpinBox, QFormLayout, QHBoxLayout,
                             QLabel, QMessageBox, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from crysplugins.interface import COLUMN_PREFERENCES, Reflections

NONE_LABEL = "(none)"

#: Readable names of column roles.
ROLE_NAMES = {"F": "amplitude F", "SIGF": "σ(F)", "I": "intensity I", "SIGI": "σ(I)", "PHI": "phase (°)",
              "FOM": "weight (FOM)", "FWT": "map amplitude"}


def show_error(parent: QWidget | None, title: str, message: str, details: str = "") -> QMessageBox:
    """Show a critical message box without blocking; returns it (kept alive by its parent)."""
    box = QMessageBox(QMessageBox.Icon.Critical, title, message, QMessageBox.StandardButton.Ok, parent)
    if details:
        box.setDetailedText(details)
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, True)
    box.setWindowModality(Qt.WindowModality.WindowModal if parent is not None else Qt.WindowModality.NonModal)
    box.open()
    return box


class ColumnDialog(QDialog):
    """Choose an MTZ column for each role; defaults are the automatic choices of ``crystal.io.read_mtz``.

    ``roles`` are role names; a trailing ``?`` marks an optional role (it gets a "(none)" choice).
    ``defaults`` maps roles to labels (usually ``Reflections.columns`` from an automatic read).
    """

    def __init__(self, reflections: Reflections, roles: Iterable[str], defaults: dict[str, str] | None = None,
                 title: str = "MTZ columns", sampling: float | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(title)
        self.reflections = reflections
        defaults = dict(defaults if defaults is not None else reflections.columns)
        labels = [(c.label, c.type) for c in reflections.mtz.columns]
        layout = QVBoxLayout(self)
        d = reflections.describe()
        layout.addWidget(QLabel(f"{reflections.name}: {d['reflections']} reflections, "
                                f"{d['d_min']:.2f} Å, {d['spacegroup']}"))
        form = QFormLayout()
        self.combos: dict[str, QComboBox] = {}
        for item in roles:
            optional = item.endswith("?")
            for role in item.rstrip("?").split("|"):
                types = COLUMN_PREFERENCES.get(role, ((), "FJQPWDGKLMABE"))[1]
                combo = QComboBox()
                if optional or "|" in item:
                    combo.addItem(NONE_LABEL)
                for label, typ in labels:
                    if typ in types:
                        combo.addItem(f"{label} ({typ})", label)
                if role in defaults:
                    idx = combo.findData(defaults[role])
                    if idx >= 0:
                        combo.setCurrentIndex(idx)
                form.addRow(ROLE_NAMES.get(role, role) + ("" if not optional else " (optional)"), combo)
                self.combos[role] = combo
        self.sampling_spin: QDoubleSpinBox | None = None
        self.spacing_label: QLabel | None = None
        if sampling is not None:
            self.sampling_spin = QDoubleSpinBox()
            self.sampling_spin.setRange(1.5, 6.0)
            self.sampling_spin.setSingleStep(0.5)
            self.sampling_spin.setValue(sampling)
            self.sampling_spin.setPrefix("d_min / ")
            self.sampling_spin.setToolTip("grid spacing as a fraction of the resolution limit d_min "
                                          "(d_min / 3 is usual: twice the Shannon rate)")
            self.spacing_label = QLabel()
            self.sampling_spin.valueChanged.connect(self._show_spacing)
            self._show_spacing(sampling)
            spacing_row = QHBoxLayout()
            spacing_row.addWidget(self.sampling_spin)
            spacing_row.addWidget(self.spacing_label, 1)
            form.addRow("Grid spacing", spacing_row)
        layout.addLayout(form)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)

    def _show_spacing(self, rate: float) -> None:
        self.spacing_label.setText(f"= {self.reflections.d_min / rate:.2f} Å")

    def set_column(self, role: str, label: str) -> None:
        combo = self.combos[role]
        idx = combo.findData(label)
        if idx < 0:
            raise ValueError(f"no column {label} for {role}")
        combo.setCurrentIndex(idx)

    def columns(self) -> dict[str, str]:
        """The chosen labels by role (roles left at "(none)" are absent)."""
        out = {}
        for role, combo in self.combos.items():
            label = combo.currentData()
            if label:
                out[role] = label
        return out

    def sampling(self) -> float:
        return self.sampling_spin.value() if self.sampling_spin is not None else 3.0


class PluginsDialog(QDialog):
    """Installed plugins, their predictors, and the plugins that failed to load (with the error)."""

    def __init__(self, host: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Plugins")
        self.resize(760, 420)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Predictors"))
        entries = sorted(host.predictors.values(), key=lambda e: e.predictor.name)
        self.predictor_table = self._table(["predictor", "version", "plugin", "distribution", "summary"],
                                           [[e.predictor.name, e.predictor.version, e.plugin, e.distribution,
                                             e.predictor.summary] for e in entries])
        layout.addWidget(self.predictor_table)
        failures = list(host.failures)
        layout.addWidget(QLabel(f"Failed plugins ({len(failures)})" if failures else "No plugin failed to load."))
        self.failure_table = self._table(["plugin", "distribution", "error"],
                                         [[f.plugin, f.distribution, f.error] for f in failures],
                                         colour=QColor(200, 40, 40))
        self.failure_table.setVisible(bool(failures))
        layout.addWidget(self.failure_table)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        buttons.accepted.connect(self.accept)
        layout.addWidget(buttons)

    @staticmethod
    def _table(headers: list[str], rows: list[list[str]], colour: QColor | None = None) -> QTableWidget:
        table = QTableWidget(len(rows), len(headers))
        table.setHorizontalHeaderLabels(headers)
        table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        for r, row in enumerate(rows):
            for c, value in enumerate(row):
                item = QTableWidgetItem(str(value))
                item.setToolTip(str(value))
                if colour is not None:
                    item.setForeground(colour)
                table.setItem(r, c, item)
        table.horizontalHeader().setStretchLastSection(True)
        table.resizeColumnsToContents()
        return table

    def failure_texts(self) -> list[str]:
        t = self.failure_table
        return [" | ".join(t.item(r, c).text() for c in range(t.columnCount())) for r in range(t.rowCount())]
