"""A fault-variant plugin for the host tests: predict never returns."""
import sys
import time
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parents[1]))  # the shared crysfault_base.py
from crysfault_base import FaultPredictor, registers  # noqa: E402


class Hangs(FaultPredictor, name="fault-hangs", summary="predict never returns"):
    def predict(self, request):
        time.sleep(3600)


register_predictors = registers(Hangs)
