"""A fault-variant plugin for the host tests: predict calls os._exit."""
import os
import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parents[1]))  # the shared crysfault_base.py
from crysfault_base import FaultPredictor, registers  # noqa: E402


class Exits(FaultPredictor, name="fault-exits", summary="predict calls os._exit"):
    def predict(self, request):
        os._exit(3)


register_predictors = registers(Exits)
