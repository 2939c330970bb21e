"""A fault-variant plugin for the host tests: predict raises."""
import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parents[1]))  # the shared crysfault_base.py
from crysfault_base import FaultPredictor, registers  # noqa: E402


class Raises(FaultPredictor, name="fault-raises", summary="predict raises"):
    def predict(self, request):
        raise RuntimeError("boom in predict")


register_predictors = registers(Raises)
