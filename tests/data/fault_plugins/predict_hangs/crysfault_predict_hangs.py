"""A fault-variant plugin for the host tests: predict never returns."""
import time

from crysplugins.hookspecs import hookimpl
from crysplugins.interface import Kind, OutputSpec, Prediction, Scalar


class Hangs:
    name = "fault-hangs"
    version = "0.1"
    summary = "predict never returns"
    inputs = ()
    outputs = (OutputSpec("answer", Kind.SCALAR, "a number"),)

    def example_inputs(self):
        return {}

    def predict(self, request):
        time.sleep(3600)


@hookimpl
def register_predictors(register):
    register(Hangs())
