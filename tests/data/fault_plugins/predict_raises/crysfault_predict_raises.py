"""A fault-variant plugin for the host tests: predict raises."""

from crysplugins.hookspecs import hookimpl
from crysplugins.interface import Kind, OutputSpec, Prediction, Scalar


class Raises:
    name = "fault-raises"
    version = "0.1"
    summary = "predict raises"
    inputs = ()
    outputs = (OutputSpec("answer", Kind.SCALAR, "a number"),)

    def example_inputs(self):
        return {}

    def predict(self, request):
        raise RuntimeError("boom in predict")


@hookimpl
def register_predictors(register):
    register(Raises())
