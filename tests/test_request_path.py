"""The one request path (crysplugins.request): the CLI, the Qt worker and evaluate load, default, check,
run and write through the same functions, so a request means the same thing wherever it comes from."""
from __future__ import annotations

import json

import pytest

from crysplugins import cli, request
from crysplugins.errors import CrysError
from crysplugins.evaluation import compare
from crysplugins.interface import InputSpec, Kind, OutputSpec, Prediction, Scalar


class Echo:
    """A predictor that returns the inputs it was given (values as scalars), to see what a path loaded."""

    name = "echo"
    version = "0.1"
    summary = "echo the loaded inputs"
    inputs = (
        InputSpec("n", Kind.INT, "a count", default=3, minimum=1),
        InputSpec("x", Kind.FLOAT, "a number", required=True),
        InputSpec("flag", Kind.BOOL, "a switch", default=True),
        InputSpec("mode", Kind.CHOICE, "a choice", choices=("a", "b"), default="b"),
    )
    outputs = (OutputSpec("n", Kind.SCALAR, "n"),)

    def __init__(self) -> None:
        self.seen: list[dict] = []

    def predict(self, req) -> Prediction:
        self.seen.append(dict(req.inputs) | {"refiners": sorted(req.refiners)})
        return Prediction(scalars={k: Scalar(float(v)) for k, v in req.inputs.items() if not isinstance(v, str)})


def test_defaults_are_loaded_like_user_strings_and_checked():
    inputs = request.load_request_inputs(Echo(), {"x": "2.5"})
    assert inputs == {"n": 3, "x": 2.5, "flag": True, "mode": "b"}
    assert type(inputs["n"]) is int and inputs["flag"] is True
    with pytest.raises(CrysError, match="needs --x"):
        request.load_request_inputs(Echo(), {})
    with pytest.raises(CrysError, match="at least 1"):
        request.load_request_inputs(Echo(), {"x": "1", "n": "0"})


def test_run_prediction_hands_over_the_hosts_refiners_and_refuses_non_predictions():
    echo = Echo()
    request.run_prediction(echo, {"x": 1.0})
    assert "density-modification" in echo.seen[-1]["refiners"]  # the default host's registry
    request.run_prediction(echo, {"x": 1.0}, refiners={})
    assert echo.seen[-1]["refiners"] == []

    class Broken(Echo):
        def predict(self, req):
            return {"not": "a prediction"}

    with pytest.raises(CrysError, match="returned dict, not a Prediction"):
        request.run_prediction(Broken(), {"x": 1.0})


def test_cli_and_evaluate_import_the_request_path_not_their_own():
    for module in (cli, compare):
        assert module.load_request_inputs is request.load_request_inputs
        assert module.run_prediction is request.run_prediction


def test_cli_predict_writes_through_the_request_path(tmp_path, monkeypatch, capsys):
    from crysplugins.host import Host

    echo = Echo()

    class Plugin:
        from crysplugins.hookspecs import hookimpl

        @hookimpl
        def register_predictors(self, register):
            register(echo)

    host = Host(autoload=False, only=[], extra_plugins=[("echo_plugin", Plugin())])
    monkeypatch.setattr("crysplugins.cli.default_host", lambda: host)
    assert cli.main(["predict", "echo", "--x", "4", "--flag", "no", "--out", str(tmp_path), "-q"]) == 0
    assert echo.seen[-1] | {"refiners": None} == {"n": 3, "x": 4.0, "flag": False, "mode": "b", "refiners": None}
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["scalars"]["x"]["value"] == 4.0 and result["predictor"] == "echo"


def test_gui_worker_loads_and_runs_through_the_request_path():
    pytest.importorskip("PyQt6")
    from crysplugins.gui import worker

    assert not hasattr(worker, "load_raw_inputs")  # no second copy of the rules
    echo = Echo()
    raw = {"x": worker.RawInput(echo.inputs[1], "4"), "flag": worker.RawInput(echo.inputs[2], False)}
    job = worker.PredictionWorker(echo, raw)
    finished: list = []
    job.signals.finished.connect(finished.append)
    job.run()  # on this thread: the signals are delivered directly
    cli_inputs = request.load_request_inputs(echo, {"x": "4", "flag": "no"})
    assert echo.seen[-1] | {"refiners": None} == cli_inputs | {"refiners": None}
    assert "density-modification" in echo.seen[-1]["refiners"]
    assert isinstance(finished[0], Prediction)
