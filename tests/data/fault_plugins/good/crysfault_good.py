"""A fault-variant plugin for the host tests: a well-behaved plugin."""
import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parents[1]))  # the shared crysfault_base.py
from crysfault_base import FaultPredictor, registers  # noqa: E402
from crysplugins.interface import Prediction, Scalar  # noqa: E402


class Good(FaultPredictor, name="fault-good", summary="a well-behaved plugin"):
    def predict(self, request):
        request.report(0.5, "half way")
        return Prediction(scalars={"answer": Scalar(42.0)})


register_predictors = registers(Good)
