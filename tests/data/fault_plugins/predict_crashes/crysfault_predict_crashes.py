"""A fault-variant plugin for the host tests: predict dies by a segmentation fault."""
import os
import signal
import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parents[1]))  # the shared crysfault_base.py
from crysfault_base import FaultPredictor, registers  # noqa: E402


class Crashes(FaultPredictor, name="fault-crashes", summary="predict dies by a segmentation fault"):
    def predict(self, request):
        os.kill(os.getpid(), signal.SIGSEGV)


register_predictors = registers(Crashes)
