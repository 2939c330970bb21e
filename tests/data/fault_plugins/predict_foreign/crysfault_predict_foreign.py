"""A fault-variant plugin for the host tests: predict returns an object of the plugin's own class."""
from crysplugins.hookspecs import hookimpl
from crysplugins.interface import Kind, OutputSpec, Prediction, Scalar


class Private:
    """Unpickling this in the host would import this module there."""


class Foreign:
    name = "fault-foreign"
    version = "0.1"
    summary = "predict returns an object of the plugin's own class"
    inputs = ()
    outputs = (OutputSpec("answer", Kind.SCALAR, "a number"),)

    def example_inputs(self):
        return {}

    def predict(self, request):
        return Prediction(scalars={"answer": Scalar(1.0)}, meta={"private": Private()})


@hookimpl
def register_predictors(register):
    register(Foreign())
