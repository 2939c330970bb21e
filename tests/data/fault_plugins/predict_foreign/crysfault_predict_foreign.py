"""A fault-variant plugin for the host tests: predict returns an object of the plugin's own class."""
import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parents[1]))  # the shared crysfault_base.py
from crysfault_base import FaultPredictor, registers  # noqa: E402
from crysplugins.interface import Prediction, Scalar  # noqa: E402


class Private:
    """Unpickling this in the host would import this module there."""


class Foreign(FaultPredictor, name="fault-foreign", summary="predict returns an object of the plugin's own class"):
    def predict(self, request):
        return Prediction(scalars={"answer": Scalar(1.0)}, meta={"private": Private()})


register_predictors = registers(Foreign)
