"""What the predict-time fault-variant plugins share: one scalar output, no inputs, version 0.1.

Not a distribution itself (no ``.dist-info``): each variant puts this folder on ``sys.path`` when the host's
child process imports it, so that every variant keeps only its name, summary and ``predict``.
"""
from crysplugins.hookspecs import hookimpl
from crysplugins.interface import Kind, OutputSpec


class FaultPredictor:
    """A predictor with no inputs and one scalar output ``answer``; a subclass gives its name and summary as
    class keywords (``class Exits(FaultPredictor, name="fault-exits", summary="...")``) and its ``predict``."""

    name = ""
    version = "0.1"
    summary = ""
    inputs = ()
    outputs = (OutputSpec("answer", Kind.SCALAR, "a number"),)

    def __init_subclass__(cls, name: str, summary: str, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.name, cls.summary = name, summary

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
