"""crysplugins desktop app (PyQt6, the ``gui`` extra); installs as ``crysplugins.gui``.

* :mod:`crysplugins.gui.app` — ``crysplugins gui`` / ``crysplugins-gui`` entry points;
* :mod:`crysplugins.gui.main_window` — the window: open files, map view, results, saving;
* :mod:`crysplugins.gui.map_view` and :mod:`crysplugins.gui.render` — three orthogonal slices in σ levels;
* :mod:`crysplugins.gui.predictor_panel` — the reusable predictor panel any Qt host can embed;
* :mod:`crysplugins.gui.worker` — predictors run on a ``QThreadPool`` with progress and cancellation;
* :mod:`crysplugins.gui.dialogs` — MTZ columns, installed plugins (with failures), error boxes.

The GUI uses only the plugin host and the common interface; nothing in it names a predictor.
Nothing in ``crysplugins`` imports this package.
"""
