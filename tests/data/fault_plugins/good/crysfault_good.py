"""A fault-variant plugin for the host tests: a well-behaved plugin."""

from crysplugins.hookspecs import hookimpl
from crysplugins.interface import Kind, OutputSpec, Prediction, Scalar


class Good:
    name = "fault-good"
    version = "0.1"
    summary = "a well-behaved plugin"
    inputs = ()
    outputs = (OutputSpec("answer", Kind.SCALAR, "a number"),)

    def example_inputs(self):
        return {}

    def predict(self, request):
        request.report(0.5, "half way")
        return Prediction(scalars={"answer": Scalar(42.0)})


@hookimpl
def register_predictors(register):
    register(Good())
