"""A fault-variant plugin for the host tests: predict calls os._exit."""
import os

from crysplugins.hookspecs import hookimpl
from crysplugins.interface import Kind, OutputSpec, Prediction, Scalar


class Exits:
    name = "fault-exits"
    version = "0.1"
    summary = "predict calls os._exit"
    inputs = ()
    outputs = (OutputSpec("answer", Kind.SCALAR, "a number"),)

    def example_inputs(self):
        return {}

    def predict(self, request):
        os._exit(3)


@hookimpl
def register_predictors(register):
    register(Exits())
