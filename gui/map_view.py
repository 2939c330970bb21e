"""The map view: three orthogonal slices through the unit cell, with a second map overlaid or beside it.

Each slice is drawn in the true geometry of its plane: the two cell axes shown (lengths in Å) meet at
the cell angle between them (alpha for b-c, beta for a-c, gamma for a-b), so a monoclinic cell looks
sheared.  The unit-cell edges are drawn, grid lines can be shown, and the info line states cell, space
group, grid and spacing (Å).  Levels are in σ of each map over the whole cell (see :mod:`render`).

When a second map is chosen it is overlaid as an orange contour (it must have the same cell; its grid
may differ, it is resampled to the nearest grid point) or shown side by side in a second row.  When both
maps share the grid, the Pearson correlation over the whole cell (and over the shown slices) is given.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from PyQt6.QtCore import QPointF, QRectF, Qt, pyqtSignal
from PyQt6.QtGui import QColor, QFont, QImage, QPainter, QPen, QPolygonF, QTransform
from PyQt6.QtWidgets import (QCheckBox, QComboBox, QDoubleSpinBox, QGridLayout, QHBoxLayout, QLabel,
                             QSizePolicy, QSlider, QVBoxLayout, QWidget)

from crysplugins.interface import CrystalMap
from crysplugins.gui import render

NO_SECOND = "(none)"


def array_to_qimage(rgba: np.ndarray) -> QImage:
    """A deep copy of an (h, w, 4) uint8 RGBA array as a QImage."""
    rgba = np.ascontiguousarray(rgba, dtype=np.uint8)
    h, w = rgba.shape[:2]
    img = QImage(rgba.data, w, h, 4 * w, QImage.Format.Format_RGBA8888)
    return img.copy()


class SliceCanvas(QWidget):
    """Paints one slice image into the parallelogram of its plane, with cell edges and labels."""

    def __init__(self, axis: int, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.axis = axis
        self.image: QImage | None = None
        self.lengths = (1.0, 1.0)       # Å along the horizontal and vertical axes
        self.angle = 90.0               # degrees between them
        self.grid_shape = (1, 1)        # grid points along horizontal, vertical
        self.show_grid = False
        self.caption = ""
        self.title = ""
        self.setMinimumSize(160, 140)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    def set_content(self, image: QImage | None, lengths: tuple[float, float], angle: float,
                    grid_shape: tuple[int, int], caption: str, title: str) -> None:
        self.image, self.lengths, self.angle = image, lengths, angle
        self.grid_shape, self.caption, self.title = grid_shape, caption, title
        self.update()

    def _geometry(self) -> tuple[QPointF, QPointF, QPointF]:
        """Screen origin (bottom-left corner) and the horizontal and vertical cell-edge vectors."""
        lh, lv = self.lengths
        th = math.radians(self.angle)
        hx, vx, vy = lh, lv * math.cos(th), lv * math.sin(th)
        width = hx + abs(vx)
        margin_l, margin_r, margin_t, margin_b = 22, 10, 20, 36
        avail_w = max(self.width() - margin_l - margin_r, 10)
        avail_h = max(self.height() - margin_t - margin_b, 10)
        s = min(avail_w / width, avail_h / vy)
        ox = margin_l + (avail_w - width * s) / 2 + (abs(vx) * s if vx < 0 else 0)
        oy = margin_t + (avail_h + vy * s) / 2
        return QPointF(ox, oy), QPointF(hx * s, 0), QPointF(vx * s, -vy * s)

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt name)
        p = QPainter(self)
        p.fillRect(self.rect(), QColor(24, 24, 28))
        p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
        origin, h, v = self._geometry()
        if self.image is not None and not self.image.isNull():
            w_img, h_img = self.image.width(), self.image.height()
            # image pixel (x, y) -> origin + v + x/W * h - y/H * v  (row 0 is the top edge)
            t = QTransform(h.x() / w_img, h.y() / w_img, -v.x() / h_img, -v.y() / h_img,
                           origin.x() + v.x(), origin.y() + v.y())
            p.save()
            p.setTransform(t)
            p.drawImage(QRectF(0, 0, w_img, h_img), self.image)
            p.restore()
        if self.show_grid:
            self._draw_grid(p, origin, h, v)
        corners = [origin, origin + h, origin + h + v, origin + v]
        p.setPen(QPen(QColor(240, 210, 80), 1.5))
        p.drawPolygon(QPolygonF(corners))
        names = render.PLANE_AXES[self.axis]
        p.setPen(QColor(240, 210, 80))
        font = QFont(p.font())
        font.setPointSizeF(max(font.pointSizeF(), 8.0))
        p.setFont(font)
        p.drawText(origin + h * 0.5 + QPointF(-4, 14), render.AXIS_NAMES[names[0]])
        p.drawText(origin + v * 0.5 + QPointF(-14, 4), render.AXIS_NAMES[names[1]])
        p.setPen(QColor(225, 225, 225))
        p.drawText(QRectF(4, 2, self.width() - 8, 16), Qt.AlignmentFlag.AlignLeft, self.title)
        p.drawText(QRectF(4, self.height() - 16, self.width() - 8, 14), Qt.AlignmentFlag.AlignRight, self.caption)
        p.end()

    def _draw_grid(self, p: QPainter, origin: QPointF, h: QPointF, v: QPointF) -> None:
        nh, nv = self.grid_shape
        pix_h = math.hypot(h.x(), h.y()) / max(nh, 1)
        pix_v = math.hypot(v.x(), v.y()) / max(nv, 1)
        step_h = max(1, math.ceil(6 / max(pix_h, 1e-6)))
        step_v = max(1, math.ceil(6 / max(pix_v, 1e-6)))
        p.setPen(QPen(QColor(255, 255, 255, 45), 0.6))
        for i in range(0, nh, step_h):
            a = origin + h * (i / nh)
            p.drawLine(a, a + v)
        for j in range(0, nv, step_v):
            a = origin + v * (j / nv)
            p.drawLine(a, a + h)


class MapView(QWidget):
    """Three slices (perpendicular to a, b, c) with a slider each, a σ level, and an optional second map."""

    sliceChanged = pyqtSignal(int, int)      # axis, grid index
    mapChanged = pyqtSignal(object)          # the shown CrystalMap (or None)
    rendered = pyqtSignal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.maps: list[CrystalMap] = []
        self.current: CrystalMap | None = None
        self.second: CrystalMap | None = None
        self._stats: dict[int, render.MapStats] = {}
        self._cc_cache: dict[tuple[int, int], float] = {}
        self.correlation: float | None = None

        self.map_combo = QComboBox()
        self.second_combo = QComboBox()
        for combo in (self.map_combo, self.second_combo):
            combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(10)
        self.second_combo.addItem(NO_SECOND)
        self.mode_combo = QComboBox()
        self.mode_combo.addItems(["overlay", "side by side"])
        self.level_spin = QDoubleSpinBox()
        self.level_spin.setRange(-10.0, 20.0)
        self.level_spin.setSingleStep(0.1)
        self.level_spin.setDecimals(2)
        self.level_spin.setValue(1.0)
        self.level_spin.setSuffix(" σ")
        self.level_spin.setToolTip("contour level and colour scale, in standard deviations of each map")
        self.grid_check = QCheckBox("grid")
        self.info_label = QLabel("No map open: File > Open, or drop a CCP4/MRC map, an MTZ, a PDB/mmCIF or a FASTA file here.")
        self.info_label.setWordWrap(True)
        self.cc_label = QLabel("")
        self.cc_label.setWordWrap(True)

        top = QHBoxLayout()
        top.addWidget(QLabel("Map"))
        top.addWidget(self.map_combo, 1)
        top.addWidget(QLabel("Level"))
        top.addWidget(self.level_spin)
        top.addWidget(self.grid_check)
        top.addSpacing(12)
        top.addWidget(QLabel("Compare"))
        top.addWidget(self.second_combo, 1)
        top.addWidget(self.mode_combo)

        self.canvases = [SliceCanvas(ax) for ax in range(3)]
        self.second_canvases = [SliceCanvas(ax) for ax in range(3)]
        self.sliders: list[QSlider] = []
        self.slider_labels: list[QLabel] = []
        grid = QGridLayout()
        for ax in range(3):
            grid.addWidget(self.canvases[ax], 0, ax)
            grid.addWidget(self.second_canvases[ax], 1, ax)
            self.second_canvases[ax].hide()
            slider = QSlider(Qt.Orientation.Horizontal)
            slider.setRange(0, 0)
            slider.valueChanged.connect(lambda value, a=ax: self._slider_moved(a, value))
            label = QLabel(f"{render.AXIS_NAMES[ax]} = -")
            label.setMinimumWidth(120)
            row = QHBoxLayout()
            row.addWidget(label)
            row.addWidget(slider, 1)
            grid.addLayout(row, 2, ax)
            self.sliders.append(slider)
            self.slider_labels.append(label)

        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addLayout(grid, 1)
        layout.addWidget(self.info_label)
        layout.addWidget(self.cc_label)

        self.map_combo.currentIndexChanged.connect(self._map_selected)
        self.second_combo.currentIndexChanged.connect(self._second_selected)
        self.mode_combo.currentIndexChanged.connect(lambda _: self.refresh())
        self.level_spin.valueChanged.connect(lambda _: self.refresh())
        self.grid_check.toggled.connect(self._grid_toggled)

    # ------------------------------------------------------------------ maps

    def add_map(self, cmap: CrystalMap, show: bool = True) -> None:
        """Add a map to the choices (and show it unless ``show`` is False)."""
        self.maps.append(cmap)
        label = self._label(cmap)
        self.map_combo.blockSignals(True)
        self.map_combo.addItem(label)
        self.map_combo.blockSignals(False)
        self.second_combo.addItem(label)
        if show or self.current is None:
            self.map_combo.setCurrentIndex(len(self.maps) - 1)
            self._map_selected(len(self.maps) - 1)

    def _label(self, cmap: CrystalMap) -> str:
        names = [m.name for m in self.maps[:-1]]
        n = names.count(cmap.name)
        return cmap.name if n == 0 else f"{cmap.name} ({n + 1})"

    def set_second(self, cmap: CrystalMap | None, mode: str | None = None) -> None:
        """Compare the shown map with ``cmap`` (a map already added), ``mode`` 'overlay' or 'side by side'."""
        index = 0 if cmap is None else 1 + self._index(cmap)
        for combo in (self.mode_combo, self.second_combo):
            combo.blockSignals(True)
        if mode is not None:
            self.mode_combo.setCurrentText(mode)
        self.second_combo.setCurrentIndex(index)
        for combo in (self.mode_combo, self.second_combo):
            combo.blockSignals(False)
        self._second_selected(index)

    def show_map(self, cmap: CrystalMap) -> None:
        self.map_combo.setCurrentIndex(self._index(cmap))

    def _index(self, cmap: CrystalMap) -> int:
        for i, m in enumerate(self.maps):
            if m is cmap:
                return i
        raise ValueError("the map is not in the view")

    def stats(self, cmap: CrystalMap) -> render.MapStats:
        key = id(cmap)
        if key not in self._stats:
            self._stats[key] = render.MapStats.of(cmap.array)
        return self._stats[key]

    def _map_selected(self, index: int) -> None:
        if index < 0 or index >= len(self.maps):
            return
        old = self.current
        self.current = self.maps[index]
        shape = self.current.shape
        for ax in range(3):
            slider = self.sliders[ax]
            keep = slider.value() / max(slider.maximum() + 1, 1) if old is not None else 0.5
            slider.blockSignals(True)
            slider.setRange(0, shape[ax] - 1)
            slider.setValue(int(round(keep * shape[ax])) % shape[ax])
            slider.blockSignals(False)
        self._update_info()
        self.refresh()
        self.mapChanged.emit(self.current)

    def _second_selected(self, index: int) -> None:
        self.second = None if index <= 0 else self.maps[index - 1]
        self.refresh()

    def _grid_toggled(self, on: bool) -> None:
        for c in self.canvases + self.second_canvases:
            c.show_grid = on
            c.update()

    def _slider_moved(self, axis: int, value: int) -> None:
        self._render_axis(axis)
        self._update_slice_cc()
        self.sliceChanged.emit(axis, value)

    # ------------------------------------------------------------------ drawing

    def slice_index(self, axis: int) -> int:
        return self.sliders[axis].value()

    def set_slice(self, axis: int, index: int) -> None:
        self.sliders[axis].setValue(index)

    @property
    def mode(self) -> str:
        return self.mode_combo.currentText()

    def refresh(self) -> None:
        """Redraw all slices and the correlation readout."""
        side = self.second is not None and self.mode == "side by side"
        for c in self.second_canvases:
            c.setVisible(side)
        for ax in range(3):
            self._render_axis(ax)
        self._update_cc()
        self.rendered.emit()

    def _comparable(self) -> bool:
        return (self.current is not None and self.second is not None
                and self.second.cell.approx(self.current.cell, 1e-3))

    def _render_axis(self, axis: int) -> None:
        cmap = self.current
        if cmap is None:
            return
        index = self.sliders[axis].value()
        n = cmap.shape[axis]
        frac = index / n
        hx, vx = render.PLANE_AXES[axis]
        cell = cmap.cell
        params = cell.parameters
        lengths = (params[hx], params[vx])
        angle = params[render.PLANE_ANGLE[axis]]
        values = render.take_slice(cmap.array, axis, index)
        factor = render.upsample_factor(values.shape)
        level = self.level_spin.value()
        overlay = overlay_stats = None
        if self.second is not None and self.mode == "overlay" and self._comparable():
            overlay = render.take_slice_fractional(self.second.array, axis, frac, values.shape)
            overlay_stats = self.stats(self.second)
        rgba = render.render_slice(values, self.stats(cmap), level, factor=factor,
                                   overlay=overlay, overlay_stats=overlay_stats)
        names = render.AXIS_NAMES
        title = f"{names[hx]}{names[vx]} plane, {names[axis]} = {frac:.3f}"
        caption = f"{values.shape[0]}×{values.shape[1]} grid points"
        self.canvases[axis].set_content(array_to_qimage(rgba), lengths, angle, values.shape, caption, title)
        self.slider_labels[axis].setText(f"{names[axis]} = {frac:.3f} ({index}/{n})")
        if self.second is not None and self.mode == "side by side":
            second = self.second
            n2 = second.shape[axis]
            idx2 = int(round(frac * n2)) % n2
            values2 = render.take_slice(second.array, axis, idx2)
            p2 = second.cell.parameters
            rgba2 = render.render_slice(values2, self.stats(second), level, lut=render.LUT_WARM,
                                        contour=render.CONTOUR_SECOND,
                                        factor=render.upsample_factor(values2.shape))
            self.second_canvases[axis].set_content(
                array_to_qimage(rgba2), (p2[hx], p2[vx]), p2[render.PLANE_ANGLE[axis]], values2.shape,
                f"{second.name}: {values2.shape[0]}×{values2.shape[1]}",
                f"{names[hx]}{names[vx]} plane, {names[axis]} = {idx2 / n2:.3f}")

    def _update_info(self) -> None:
        cmap = self.current
        if cmap is None:
            return
        a, b, c, al, be, ga = cmap.cell.parameters
        sp = cmap.spacing()
        st = self.stats(cmap)
        units = f" {cmap.units}" if cmap.units else ""
        self.info_label.setText(
            f"{cmap.name}: cell {a:.2f} {b:.2f} {c:.2f} Å  {al:.1f} {be:.1f} {ga:.1f}°,  "
            f"{cmap.spacegroup.hm if cmap.spacegroup else 'P 1'},  grid {cmap.shape[0]}×{cmap.shape[1]}×{cmap.shape[2]} "
            f"(spacing {sp[0]:.2f} {sp[1]:.2f} {sp[2]:.2f} Å),  mean {st.mean:.3g}{units}, σ {st.sigma:.3g}{units}")

    def _update_cc(self) -> None:
        self.correlation = None
        if self.second is None or self.current is None:
            self.cc_label.setText("")
            return
        if not self.current.same_grid(self.second):
            why = "same cell, different grid" if self._comparable() else "different cells"
            self.cc_label.setText(f"Compared with {self.second.name}: {why}, no correlation computed.")
            return
        key = (id(self.current), id(self.second))
        if key not in self._cc_cache:
            self._cc_cache[key] = render.pearson(self.current.array, self.second.array)
        self.correlation = self._cc_cache[key]
        self._update_slice_cc()

    def _update_slice_cc(self) -> None:
        if self.correlation is None or self.current is None or self.second is None:
            return
        ccs = [render.pearson(render.take_slice(self.current.array, ax, self.slice_index(ax)),
                              render.take_slice(self.second.array, ax, self.slice_index(ax))) for ax in range(3)]
        self.cc_label.setText(
            f"Correlation with {self.second.name} (same grid): whole cell {self.correlation:.3f};  "
            f"shown slices {ccs[0]:.3f} / {ccs[1]:.3f} / {ccs[2]:.3f}")

    def labels(self) -> Sequence[str]:
        return [self.map_combo.itemText(i) for i in range(self.map_combo.count())]
