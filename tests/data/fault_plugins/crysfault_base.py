"""What the predict-time fault-variant plugins share: one scalar output, no inputs, version 0.1.

Not a distribution itself (no ``.dist-info``): each variant puts this folder on ``sys.path`` when the host's
child process imports it, so that every variant keeps only its name, summary and ``predict``.
"""
from crysplugins.hookspecs import hookimpl
from crysplugins.interface import Kind, OutputSpec


class FaultPredictor:
    """A predictor with no inputs and one scalar output ``answer``; subclasses set name, summary, predict."""

    name = ""
    version = "0.1"
    summary = ""
    inputs = ()
    outputs = (OutputSpec("answer", Kind.SCALAR, "a number"),)

    def example_inputs(self):
        return {}

    def predict(self, request):
        raise NotImplementedError


def registers(predictor_class):
    """The module-level ``register_predictors`` hook of a plugin that registers one ``predictor_class()``."""

    @hookimpl
    def register_predictors(register):
        register(predictor_class())

    return register_predictors
