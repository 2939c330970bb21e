"""A fault-variant plugin for the host tests: predict dies by a segmentation fault."""
import os
import signal

from crysplugins.hookspecs import hookimpl
from crysplugins.interface import Kind, OutputSpec, Prediction, Scalar


class Crashes:
    name = "fault-crashes"
    version = "0.1"
    summary = "predict dies by a segmentation fault"
    inputs = ()
    outputs = (OutputSpec("answer", Kind.SCALAR, "a number"),)

    def example_inputs(self):
        return {}

    def predict(self, request):
        os.kill(os.getpid(), signal.SIGSEGV)


@hookimpl
def register_predictors(register):
    register(Crashes())
