"""The desktop app survives a third-party plugin whose prediction ends its process or dies by a signal.

The fault-variant distributions of tests/data/fault_plugins (``predict_exits``: ``os._exit(3)``;
``predict_crashes``: SIGSEGV; ``good``) are put on ``sys.path`` the way tests/test_plugin_faults.py does and
loaded by a real ``Host`` (entry points discovered in a child process, predictions run in a child).  The
panel runs each faulty predictor: the app must still be alive, show the host's one-sentence error naming
the plugin and its distribution in a dialog, and run the good plugin afterwards.  Waits are signals only.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
pytest.importorskip("PyQt6")
pytest.importorskip("pytestqt")

from PyQt6.QtCore import QSettings  # noqa: E402
from PyQt6.QtWidgets import QApplication, QMessageBox  # noqa: E402

from crysplugins.host import Host  # noqa: E402
from crysplugins.sandbox import PredictorProxy  # noqa: E402

FAULTS = Path(__file__).resolve().parent / "data" / "fault_plugins"
PLUGINS = ("good", "predict_exits", "predict_crashes")
#: predictor -> words of the host's sentence (the same as on the command line)
FAILURES = {
    "fault-exits": "The plugin fault_predict_exits (crysfault-predict-exits 0.1) ended its process during "
                   "fault-exits.predict (exit code 3)",
    "fault-crashes": "The plugin fault_predict_crashes (crysfault-predict-crashes 0.1) ended its process during "
                     "fault-crashes.predict (killed by signal SIGSEGV)",
}


@pytest.fixture
def window(qtbot, tmp_path, monkeypatch):
    from crysplugins.gui.main_window import MainWindow

    for name in PLUGINS:
        monkeypatch.syspath_prepend(str(FAULTS / name))
    monkeypatch.setenv("CRYSPLUGINS_PLUGIN_IMPORT_TIMEOUT", "10")
    monkeypatch.setenv("CRYSPLUGINS_PLUGIN_TIMEOUT", "30")
    monkeypatch.delenv("CRYSPLUGINS_PLUGIN_ISOLATION", raising=False)
    host = Host(autoload=True, only=["solvent_content", *(f"fault_{name}" for name in PLUGINS)])
    assert isinstance(host.get("fault-crashes"), PredictorProxy)  # run in a child, as any third-party plugin
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    w = MainWindow(host=host, settings=settings)
    qtbot.addWidget(w)
    w.show()
    yield w
    w.panel.shutdown()


@pytest.mark.parametrize("predictor", list(FAILURES))
def test_app_survives_a_plugin_that_ends_its_process(window, qtbot, predictor):
    panel = window.panel
    panel.select(predictor)
    with qtbot.waitSignal(panel.predictionFailed, timeout=60000) as blocker:
        assert panel.run() is not None
    name, message = blocker.args
    assert name == predictor
    assert message.startswith(FAILURES[predictor]) and message.endswith("."), message
    assert message.count(". ") == 0  # one sentence
    box = panel.last_error_dialog
    assert isinstance(box, QMessageBox) and box.isVisible()
    assert FAILURES[predictor] in box.text()
    box.close()
    # the app is alive: the window is shown, the panel is ready again and another plugin runs to the end
    qtbot.waitUntil(lambda: not panel.running, timeout=10000)
    assert window.isVisible() and QApplication.instance() is not None
    assert panel.run_button.isEnabled()
    panel.select("fault-good")
    got = []
    panel.predictionFinished.connect(lambda n, prediction: got.append(prediction))
    with qtbot.waitSignal(panel.runDone, timeout=60000):
        assert panel.run() is not None
    assert len(got) == 1 and got[0].scalars["answer"].value == 42.0
