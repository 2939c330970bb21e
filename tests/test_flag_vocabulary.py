"""One flag vocabulary across commands: every MTZ input is --reflections (columns --reflections-columns),
every density map --map, every resolution --resolution; older spellings are hidden aliases, required
inputs are required in --help, and messages name flags rather than internal input names."""
from __future__ import annotations

import argparse
import json

import pytest

from crysplugins import cli
from crysplugins.examples import EXAMPLES
from crysplugins.host import default_host
from crysplugins.inputs import RESOLUTION_NAMES, SPECIAL_MAP_WORDS, input_flags, input_name
from crysplugins.interface import InputSpec, Kind

PREDICTORS = default_host().names()
FRAGMENT = EXAMPLES / "patterson_density" / "2XHE_1_460_amplitudes.mtz"


def _dests(parser: argparse.ArgumentParser) -> dict[str, str]:
    """{option string: dest} of a parser."""
    return {opt: action.dest for action in parser._actions for opt in action.option_strings}


def _is_density_map(spec: InputSpec) -> bool:
    return spec.kind is Kind.MAP and not any(w in spec.name for w in SPECIAL_MAP_WORDS)


def test_builtin_predictors_are_all_checked():
    assert {"charge-flipping", "patterson-density", "solvent-content", "solvent-mask",
            "solvent-mask-local-variance"} <= set(PREDICTORS)


@pytest.mark.parametrize("name", PREDICTORS)
def test_predictor_flags_follow_the_vocabulary(name):
    predictor = default_host().get(name)
    parser = cli.build_predict_parser(predictor)
    dests = _dests(parser)
    help_text = parser.format_help()
    for spec in predictor.inputs:
        if spec.kind is Kind.REFLECTIONS:
            assert dests["--reflections"] == spec.name
            assert dests["--reflections-columns"] == f"{spec.name}__columns"
        if _is_density_map(spec):
            assert dests["--map"] == spec.name
        if spec.kind is Kind.FLOAT and spec.name in RESOLUTION_NAMES:
            assert dests["--resolution"] == spec.name
        old = "--" + spec.name.replace("_", "-")
        assert dests[old] == spec.name  # the input's own name still works ...
        if old not in ("--reflections", "--map", "--resolution") and old != "--" + input_flags(predictor.inputs)[spec.name]:
            assert f"{old} " not in help_text and f"{old}\n" not in help_text  # ... but is not shown


def test_old_spellings_are_hidden_aliases():
    predictor = default_host().get("charge-flipping")
    parser = cli.build_predict_parser(predictor)
    old = parser.parse_args(["--mtz", "a.mtz", "--mtz-columns", "F=FP", "--d-min", "2"])
    new = parser.parse_args(["--reflections", "a.mtz", "--reflections-columns", "F=FP", "--resolution", "2"])
    assert vars(old) == vars(new)
    text = parser.format_help()
    assert "--mtz" not in text and "--d-min" not in text and "--reflections" in text
    content = cli.build_predict_parser(default_host().get("solvent-content"))
    assert content.parse_args(["--phasing-map", "m.ccp4"]).phasing_map == "m.ccp4"
    assert content.parse_args(["--map", "m.ccp4"]).phasing_map == "m.ccp4"


def test_required_inputs_are_required_in_help(capsys):
    parser = cli.build_predict_parser(default_host().get("charge-flipping"))
    usage = parser.format_usage()
    assert "--reflections REFLECTIONS" in usage and "[--reflections REFLECTIONS]" not in usage
    assert "required inputs" in parser.format_help()
    with pytest.raises(SystemExit):
        parser.parse_args(["--sequence", "TM"])
    assert "--reflections" in capsys.readouterr().err
    variance = cli.build_predict_parser(default_host().get("solvent-mask-local-variance"))
    assert "[--solvent-fraction" not in variance.format_usage()


def test_refine_and_evaluate_speak_the_same_vocabulary():
    parser = cli.build_parser("refine")
    new = parser.parse_args(["refine", "--map", "m.ccp4", "--reflections", "d.mtz", "--reflections-columns",
                             "F=FP", "--out", "o"])
    old = parser.parse_args(["refine", "--map", "m.ccp4", "--mtz", "d.mtz", "--columns", "F=FP", "--out", "o"])
    assert (new.mtz, new.columns) == (old.mtz, old.columns) == ("d.mtz", "F=FP")
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["refine"]
    assert "--mtz" not in sub.format_help() and "--reflections MTZ" in sub.format_usage()
    flipping = default_host().get("charge-flipping").inputs
    assert input_name(flipping, "resolution") == input_name(flipping, "d-min") == "d_min"
    assert input_name(flipping, "reflections") == "mtz"
    assert input_name(flipping, "nonsense") is None


def test_list_json_names_each_flag(capsys):
    assert cli.main(["list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["predictors"]
    for row in rows:
        for spec in row["inputs"]:
            if spec["kind"] == "reflections":
                assert spec["flag"] == "--reflections" and spec["columns_flag"] == "--reflections-columns"
            if spec["kind"] == "map" and "patterson" not in spec["name"]:
                assert spec["flag"] == "--map"


def test_derivation_keeps_a_shared_flag_for_one_input_only():
    one = [InputSpec("mtz", Kind.REFLECTIONS, ""), InputSpec("d_min", Kind.FLOAT, ""),
           InputSpec("phasing_map", Kind.MAP, ""), InputSpec("patterson", Kind.MAP, ""),
           InputSpec("solvent_mask", Kind.MAP, "")]
    assert input_flags(one) == {"mtz": "reflections", "d_min": "resolution", "phasing_map": "map",
                                "patterson": "patterson", "solvent_mask": "solvent-mask"}
    two = [InputSpec("native", Kind.REFLECTIONS, ""), InputSpec("derivative", Kind.REFLECTIONS, "")]
    assert input_flags(two) == {"native": "native", "derivative": "derivative"}


@pytest.mark.parametrize("argv, flag", [
    (["predict", "solvent-mask-local-variance", "--map", "x.ccp4"], "--solvent-fraction"),
    (["predict", "solvent-mask"], "--map or --reflections"),
    (["predict", "solvent-content", "--cell", "30 40 50 90 90 90", "--spacegroup", "P1",
      "--molecular-weight", "100", "--resolution", "abc"], "--resolution must be a number"),
    (["predict", "solvent-mask", "--resolution", "nan"], "--resolution must be a finite number"),
    (["predict", "charge-flipping", "--sequence", "TM", "--reflections", str(FRAGMENT), "--d-min", "nan"],
     "--resolution must be a finite number"),
])
def test_errors_name_the_flag(argv, flag, capsys):
    try:
        code = cli.main(argv)
    except SystemExit as exc:  # argparse's own usage errors
        code = exc.code
    err = capsys.readouterr().err
    assert code != 0 and flag in err, err
    assert "solvent_fraction" not in err and "d_min" not in err
