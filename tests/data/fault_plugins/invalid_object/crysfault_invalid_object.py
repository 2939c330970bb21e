"""A fault-variant plugin for the host tests: it registers something that is not a predictor."""
from crysplugins.hookspecs import hookimpl


class NotAPredictor:
    name = "fault invalid!"


@hookimpl
def register_predictors(register):
    register(NotAPredictor())
