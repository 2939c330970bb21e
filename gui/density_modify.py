"""Density modification from the window: ``crysplugins density-modify`` on an open MTZ, results shown.

The action runs the command itself (same code, same checks, same files) in a :class:`QProcess`, so the
window stays responsive and a run can be stopped; when it ends, ``density_modified.ccp4`` is shown as a
map and ``density_modified.mtz`` (FWT/PHWT, PHIB/FOM, HLA–HLD) is added to the Data list, where Save…
writes it anywhere.  Inputs: the MTZ (F or I, σ, PHIB + FOM or HL), and the solvent fraction or the
sequence of one copy (then the Matthews + U-net estimate, eq. 2 of Skubák 2024, is used).
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

from PyQt6.QtCore import QObject, QProcess, pyqtSignal

#: the command line's entry point, run in a child Python of this environment
CHILD = "import sys; from crysplugins.cli import main; sys.exit(main(sys.argv[1:]))"


def density_modify_args(mtz: str, out_dir: str, solvent_fraction: float | None = None,
                        sequence_file: str | None = None, extra: list[str] | None = None) -> list[str]:
    """``crysplugins density-modify`` arguments for an MTZ and a solvent fraction or a sequence file."""
    args = ["density-modify", "--reflections", str(mtz), "--out", str(out_dir)]
    if solvent_fraction is not None:
        args += ["--solvent-fraction", f"{solvent_fraction:.4f}"]
    elif sequence_file:
        args += ["--sequence", str(sequence_file)]
    return args + list(extra or [])


class DensityModifyRun(QObject):
    """One ``density-modify`` child process; emits ``finished(out_dir, stdout)`` or ``failed(sentence)``."""

    finished = pyqtSignal(str, str)
    failed = pyqtSignal(str)

    def __init__(self, args: list[str], out_dir: str, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.out_dir = out_dir
        self.process = QProcess(self)
        self.process.setProgram(sys.executable)
        self.process.setArguments(["-c", CHILD, *args])
        self.process.finished.connect(self._done)
        self.process.errorOccurred.connect(self._error)

    def start(self) -> None:
        self.process.start()

    def stop(self) -> None:
        if self.process.state() != QProcess.ProcessState.NotRunning:
            self.process.kill()

    def _error(self, error: QProcess.ProcessError) -> None:
        if error == QProcess.ProcessError.FailedToStart:
            self.failed.emit(f"Could not start {sys.executable} to run density-modify.")

    def _done(self, code: int, _status: QProcess.ExitStatus) -> None:
        out = bytes(self.process.readAllStandardOutput()).decode("utf-8", "replace")
        err = bytes(self.process.readAllStandardError()).decode("utf-8", "replace").strip()
        if code != 0:
            lines = [x for x in err.splitlines() if x.strip()]
            self.failed.emit(lines[-1] if lines else f"density-modify stopped with exit status {code}.")
            return
        self.finished.emit(self.out_dir, out)


def start_density_modify(mtz: str, solvent_fraction: float | None, sequence: Any | None,
                         on_finished: Callable[[str, str], None], on_failed: Callable[[str], None],
                         parent: QObject | None = None, extra: list[str] | None = None) -> DensityModifyRun:
    """Start a run in a fresh temporary folder; ``sequence`` is a :class:`~crysplugins.interface.Sequence`."""
    out_dir = tempfile.mkdtemp(prefix="crysplugins-density-modify-")
    seq_file = None
    if solvent_fraction is None and sequence is not None:
        seq_file = Path(out_dir) / "sequence.fasta"
        seq_file.write_text(f">{getattr(sequence, 'name', 'sequence')}\n{sequence.residues}\n")
    run = DensityModifyRun(density_modify_args(mtz, out_dir, solvent_fraction, seq_file, extra), out_dir, parent)
    run.finished.connect(on_finished)
    run.failed.connect(on_failed)
    run.start()
    return run
