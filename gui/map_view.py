"""The map view: three orthogonal slices through the unit cell, with a second map overlaid or beside it.

Each slice is drawn in the true geometry of its plane: the two cell axes shown (lengths in Å) meet at
the cell angle between them (alpha for b-c, beta for a-c, gamma for a-b), so a monoclinic cell looks
sheared.  The unit-cell edges are drawn, grid lines can be shown, and the info line states cell, space
group, grid and spacing (Å).  Density levels are in σ of each map over the whole cell; probability maps
and masks are contoured in their own units (0.5 by default; see :mod:`render`), each kind keeping its
own level.

When a second map is chosen it is overlaid as an orange contour (it must have the same cell; its grid
may differ, it is resampled to the nearest grid point) or shown side by side in a second row.  Only like
is compared with like: two density maps on one grid get the Pearson correlation over the whole cell
(and over the shown slices), two probability maps or masks the fraction of grid points on the same side
of their levels; a density map and a mask are only overlaid.

An open model (:meth:`MapView.set_model`) is drawn as dots, one per atom (symmetry mates included) within
:data:`MODEL_NEAR_A` of each slice plane, coloured by element.
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
#: atoms closer than this to a slice plane (Å) are drawn on it
MODEL_NEAR_A = 1.0
#: dot colours by element (others light grey)
ELEMENT_COLOURS = {"C": (120, 230, 90), "N": (90, 140, 255), "O": (255, 70, 70), "S": (255, 220, 40),
                   "P": (255, 150, 40), "SE": (255, 160, 0)}
#: the two scales of the level box: σ for densities, the map's own units for probabilities and masks
SIGMA, ABSOLUTE = "sigma", "absolute"


def model_sites(structure, cell, spacegroup) -> tuple[np.ndarray, list[str]]:
    """Fractional coordinates in [0, 1) of every atom of the first model and its symmetry mates in
    ``cell`` / ``spacegroup`` (the map's), and the element of each: ((n, 3) array, n names)."""
    model = structure[0]
    pos, elements = [], []
    for chain in model:
        for residue in chain:
            for atom in residue:
                pos.append(atom.pos.tolist())
                elements.append(atom.element.name.upper())
    if not pos:
        return np.zeros((0, 3)), []
    frac = np.asarray(pos, dtype=np.float64) @ np.asarray(cell.frac.mat.tolist()).T + np.asarray(cell.frac.vec.tolist())
    ops = list(spacegroup.operations()) if spacegroup is not None else []
    if not ops:
        return np.mod(frac, 1.0), elements
    out = []
    for op in ops:
        rot = np.asarray(op.rot, dtype=np.float64) / op.DEN
        tran = np.asarray(op.tran, dtype=np.float64) / op.DEN
        out.append(np.mod(frac @ rot.T + tran, 1.0))
    return np.concatenate(out), elements * len(ops)


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
        self.atoms: list[tuple[float, float, tuple[int, int, int]]] = []  # (fraction along h, along v, colour)
        self.setMinimumSize(130, 120)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    def set_content(self, image: QImage | None, lengths: tuple[float, float], angle: float,
                    grid_shape: tuple[int, int], caption: str, title: str,
                    atoms: list[tuple[float, float, tuple[int, int, int]]] | None = None) -> None:
        self.image, self.lengths, self.angle = image, lengths, angle
        self.grid_shape, self.caption, self.title = grid_shape, caption, title
        self.atoms = list(atoms or [])
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
        if self.image is None:  # no map yet: no cell to draw
            p.end()
            return
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
        self._draw_atoms(p, origin, h, v)
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
        title = p.fontMetrics().elidedText(self.title, Qt.TextElideMode.ElideRight, self.width() - 8)
        p.drawText(QRectF(4, 2, self.width() - 8, 16), Qt.AlignmentFlag.AlignLeft, title)
        caption = p.fontMetrics().elidedText(self.caption, Qt.TextElideMode.ElideRight, self.width() - 8)
        p.drawText(QRectF(4, self.height() - 16, self.width() - 8, 14), Qt.AlignmentFlag.AlignRight, caption)
        p.end()

    def _draw_atoms(self, p: QPainter, origin: QPointF, h: QPointF, v: QPointF) -> None:
        p.setPen(QPen(QColor(10, 10, 10), 0.8))
        for fh, fv, colour in self.atoms:
            p.setBrush(QColor(*colour))
            p.drawEllipse(origin + h * fh + v * fv, 3.0, 3.0)
        p.setBrush(Qt.BrushStyle.NoBrush)

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
        self.agreement: float | None = None      # two probability maps / masks: fraction on the same side
        self.levels = {SIGMA: 1.0, ABSOLUTE: 0.5}
        self.model = None                         # a gemmi.Structure drawn on the slices
        self.model_name = ""
        self._sites: dict[int, tuple[np.ndarray, list[str]]] = {}

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
        self.level_spin.setEnabled(False)
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
        # the comparison controls sit with the comparison's result, under the slices (a narrow window
        # keeps the map wide instead of one long row of controls)
        compare = QHBoxLayout()
        compare.addWidget(QLabel("Compare with"))
        compare.addWidget(self.second_combo, 1)
        compare.addWidget(self.mode_combo)

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
            label = QLabel(f"{render.AXIS_NAMES[ax]} -")  # the slice title gives the fraction; this the index
            label.setMinimumWidth(label.fontMetrics().horizontalAdvance("c 000/000"))
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
        layout.addLayout(compare)
        layout.addWidget(self.cc_label)

        self.map_combo.currentIndexChanged.connect(self._map_selected)
        self.second_combo.currentIndexChanged.connect(self._second_selected)
        self.mode_combo.currentIndexChanged.connect(lambda _: self.refresh())
        self.level_spin.valueChanged.connect(self._level_changed)
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

    def scale(self, cmap: CrystalMap) -> str:
        """ABSOLUTE for probability maps and masks (contoured in their own units), else SIGMA."""
        return ABSOLUTE if render.is_fraction_map(cmap.units, self.stats(cmap)) else SIGMA

    def level_for(self, cmap: CrystalMap) -> float:
        """The contour level of ``cmap``: σ for densities, its own units for probabilities and masks."""
        return self.levels[self.scale(cmap)]

    def _level_changed(self, value: float) -> None:
        if self.current is not None:
            self.levels[self.scale(self.current)] = float(value)
        self.refresh()

    def _sync_level_spin(self) -> None:
        """Show the level of the current map's kind in its units."""
        cmap = self.current
        spin = self.level_spin
        spin.blockSignals(True)
        spin.setEnabled(True)
        if self.scale(cmap) == ABSOLUTE:
            st = self.stats(cmap)
            spin.setRange(min(st.minimum, 0.0), max(st.maximum, 1.0))
            spin.setSingleStep(0.05)
            spin.setSuffix("" if st.binary else " P" if (cmap.units or "").startswith("P(") else "")
            spin.setToolTip("contour level in the map's own units (a probability or a 0/1 mask; 0.5 by default)")
            spin.setValue(self.levels[ABSOLUTE])
        else:
            spin.setRange(-10.0, 20.0)
            spin.setSingleStep(0.1)
            spin.setSuffix(" σ")
            spin.setToolTip("contour level and colour scale, in standard deviations of each map")
            spin.setValue(self.levels[SIGMA])
        spin.blockSignals(False)

    def set_model(self, structure, name: str = "") -> None:
        """Draw ``structure``'s atoms near each slice plane (None removes the model)."""
        self.model, self.model_name = structure, name
        self._sites = {}
        self.refresh()

    def sites(self, cmap: CrystalMap) -> tuple[np.ndarray, list[str]]:
        """The model's atoms (with symmetry mates) in fractional coordinates of ``cmap``'s cell."""
        key = id(cmap)
        if key not in self._sites:
            self._sites[key] = model_sites(self.model, cmap.cell, cmap.spacegroup)
        return self._sites[key]

    def atoms_near(self, cmap: CrystalMap, axis: int, frac: float) -> list[tuple[float, float, tuple[int, int, int]]]:
        """Atoms within MODEL_NEAR_A of the plane at fractional coordinate ``frac`` along ``axis``:
        (fraction along the horizontal axis, along the vertical axis, colour)."""
        if self.model is None:
            return []
        sites, elements = self.sites(cmap)
        if not len(sites):
            return []
        spacing = 1.0 / cmap.cell.reciprocal().parameters[axis]  # Å between planes of constant frac
        delta = np.abs((sites[:, axis] - frac + 0.5) % 1.0 - 0.5) * spacing
        hx, vx = render.PLANE_AXES[axis]
        return [(float(sites[i, hx]), float(sites[i, vx]), ELEMENT_COLOURS.get(elements[i], (220, 220, 220)))
                for i in np.flatnonzero(delta <= MODEL_NEAR_A)]

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
        self._sync_level_spin()
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
        overlay = overlay_stats = None
        second_absolute = self.second is not None and self.scale(self.second) == ABSOLUTE
        if self.second is not None and self.mode == "overlay" and self._comparable():
            overlay = render.take_slice_fractional(self.second.array, axis, frac, values.shape)
            overlay_stats = self.stats(self.second)
        rgba = render.render_slice(values, self.stats(cmap), self.level_for(cmap), factor=factor,
                                   overlay=overlay, overlay_stats=overlay_stats,
                                   overlay_level=self.level_for(self.second) if overlay is not None else None,
                                   absolute=self.scale(cmap) == ABSOLUTE, overlay_absolute=second_absolute)
        names = render.AXIS_NAMES
        title = f"{names[hx]}{names[vx]} plane, {names[axis]} = {frac:.3f}"
        atoms = self.atoms_near(cmap, axis, frac)
        caption = f"{values.shape[0]}×{values.shape[1]} grid points"
        if self.model is not None:
            caption = f"{len(atoms)} atoms ±{MODEL_NEAR_A:g} Å, {values.shape[0]}×{values.shape[1]} grid"
        self.canvases[axis].set_content(array_to_qimage(rgba), lengths, angle, values.shape, caption, title, atoms)
        self.slider_labels[axis].setText(f"{names[axis]} {index}/{n}")
        if self.second is not None and self.mode == "side by side":
            second = self.second
            n2 = second.shape[axis]
            idx2 = int(round(frac * n2)) % n2
            values2 = render.take_slice(second.array, axis, idx2)
            p2 = second.cell.parameters
            rgba2 = render.render_slice(values2, self.stats(second), self.level_for(second), lut=render.LUT_WARM,
                                        contour=render.CONTOUR_SECOND,
                                        factor=render.upsample_factor(values2.shape), absolute=second_absolute)
            self.second_canvases[axis].set_content(
                array_to_qimage(rgba2), (p2[hx], p2[vx]), p2[render.PLANE_ANGLE[axis]], values2.shape,
                f"{second.name}: {values2.shape[0]}×{values2.shape[1]}",
                f"{names[hx]}{names[vx]} plane, {names[axis]} = {idx2 / n2:.3f}",
                self.atoms_near(second, axis, idx2 / n2))

    def _update_info(self) -> None:
        cmap = self.current
        if cmap is None:
            return
        a, b, c, al, be, ga = cmap.cell.parameters
        sp = cmap.spacing()
        self.info_label.setText(
            f"{cmap.name}: cell {a:.2f} {b:.2f} {c:.2f} Å  {al:.1f} {be:.1f} {ga:.1f}°,  "
            f"{cmap.spacegroup.hm if cmap.spacegroup else 'P 1'},  grid {cmap.shape[0]}×{cmap.shape[1]}×{cmap.shape[2]} "
            f"(spacing {sp[0]:.2f} {sp[1]:.2f} {sp[2]:.2f} Å),  {self.value_summary(cmap)}")

    def value_summary(self, cmap: CrystalMap) -> str:
        """What the map's values are, in words a crystallographer reads at a glance."""
        st = self.stats(cmap)
        if st.binary:
            return f"mask: {(cmap.array == st.maximum).mean():.1%} of the cell at {st.maximum:g}, the rest {st.minimum:g}"
        if self.scale(cmap) == ABSOLUTE:
            return (f"{cmap.units or 'probability'} from {st.minimum:.2f} to {st.maximum:.2f}, "
                    f"mean {st.mean:.3f} over the cell")
        units = f" {cmap.units}" if cmap.units else ""
        # an FFT map has mean zero up to rounding (F000 left out): say 0, not -5.39e-11
        mean = 0.0 if abs(st.mean) < 1e-4 * st.sigma else st.mean
        return f"mean {mean:.3g}{units}, rms deviation (σ) {st.sigma:.3g}{units}"

    def _update_cc(self) -> None:
        self.correlation = None
        self.agreement = None
        if self.second is None or self.current is None:
            self.cc_label.setText("")
            return
        kinds = {self.scale(self.current), self.scale(self.second)}
        if kinds == {SIGMA, ABSOLUTE}:
            fraction, density = ((self.current, self.second) if self.scale(self.current) == ABSOLUTE
                                 else (self.second, self.current))
            self.cc_label.setText(f"{fraction.name} is a probability map or mask, {density.name} a density: "
                                  "shown together, not correlated (only like is compared with like).")
            return
        if not self.current.same_grid(self.second):
            why = "same cell, different grid" if self._comparable() else "different cells"
            self.cc_label.setText(f"Compared with {self.second.name}: {why}, no correlation computed.")
            return
        key = (id(self.current), id(self.second))
        if kinds == {ABSOLUTE}:
            same = (self.current.array >= self.level_for(self.current)) == (self.second.array >= self.level_for(self.second))
            self.agreement = float(same.mean())
            self.cc_label.setText(f"Agreement with {self.second.name} (same grid): {self.agreement:.1%} of the grid "
                                  f"points on the same side of the level {self.levels[ABSOLUTE]:g}.")
            return
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
