"""``crysplugins train TASK --config FILE --out RUN_DIR [...]``: train a model with the shared Trainer.

Tasks come from :data:`crysplugins.training.tasks.TASKS` ("reccrysformer", "solvent-unet", ...).
``--config`` is a JSON file or the name of a config shipped in ``crysplugins/training/configs``
(e.g. ``reccrysformer_dipeptide``).  Command-line options override the config's "train" section.
Multi-GPU / multi-node: start the same command under ``torchrun --nproc_per_node N -m crysplugins.cli
train ...``; the Trainer picks up RANK/WORLD_SIZE and uses DistributedDataParallel.

``hand-chirality`` is a numpy fit, not a Trainer run (:mod:`crysplugins.training.hand_chirality`): it
needs no torch, so torch is imported only when a Trainer task runs.
"""
from __future__ import annotations

import argparse
import json
from importlib import resources
from pathlib import Path
from typing import Any

from crysplugins.errors import CrysError
from crysplugins.training import hand_chirality, hand_gated
from crysplugins.training.config import train_config

#: command-line option -> Trainer key
OVERRIDES = {"epochs": int, "batch_size": int, "max_minutes": float, "max_steps": int, "seed": int,
             "threads": int, "lr": float, "max_lr": float, "accumulate": int, "eval_every_steps": int,
             "amp": str, "init_from": str}

#: recycling options (RecCrysFormer paper 000, section 4) -> keys of the config's "recycling" section
RECYCLING_OPTIONS = ("recycle_from", "templates", "refined_prob", "template_noise", "transfer_noise", "first_conv",
                     "template_hand_flip")


def load_config(spec: str | None) -> dict[str, Any]:
    """A config dict from a JSON path or a shipped config name; {} when ``spec`` is None."""
    if not spec:
        return {}
    path = Path(spec)
    if not path.exists():
        name = spec if spec.endswith(".json") else f"{spec}.json"
        shipped = resources.files("crysplugins.training") / "configs" / name
        if shipped.is_file():
            return json.loads(shipped.read_text())
        raise CrysError(f"The config {spec} is neither a file nor a shipped config.")
    try:
        return json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise CrysError(f"The config {path} is not valid JSON ({str(exc)[:120]}).") from None


def _fraction(text: str) -> float:
    """'1/6' or '0.1667' -> float."""
    try:
        if "/" in text:
            a, b = text.split("/", 1)
            return float(a) / float(b)
        return float(text)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"'{text}' is not a probability (e.g. 1/6 or 0.7)") from None


def add_recycling_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("recycling (paper 000, section 4; task reccrysformer)")
    g.add_argument("--recycle-from", metavar="RUN_DIR", help="previous run: weights and template set")
    g.add_argument("--templates", metavar="NAME",
                   help="template set in DATA/templates/ (default: the previous run folder's name)")
    g.add_argument("--refined-prob", type=_fraction, metavar="P",
                   help="probability of the refined template for refined examples (1/6 modified, 0.7 original)")
    g.add_argument("--template-noise", type=float, metavar="STD", help="Gaussian noise on the template channel (0.05)")
    g.add_argument("--transfer-noise", type=float, metavar="STD",
                   help="relative noise on transferred weights (0.01 x rms of each tensor)")
    g.add_argument("--template-hand-flip", type=_fraction, metavar="P",
                   help="probability of inverting a training template through the cell centre (hand augmentation)")
    g.add_argument("--no-transfer", action="store_true", help="train from scratch (the paper's first 'Recycling')")
    g.add_argument("--first-conv", choices=("patterson", "half-filters"),
                   help="which half of the first conv to transfer in a first recycling run (default patterson)")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model (needs torch)",
                       description="Train a model with the crysplugins Trainer (checkpoints, resume, DDP).")
    p.add_argument("task", help="task name: reccrysformer, solvent-unet, hand-classifier, hand-chirality")
    p.add_argument("--config", help="JSON config file or shipped config name")
    p.add_argument("--data", help="dataset folder (overrides the config's 'data')")
    p.add_argument("--out", required=True, help="run folder (checkpoint.pt, metrics.csv, config.json)")
    p.add_argument("--resume", action="store_true", help="continue from RUN_DIR/checkpoint.pt")
    for opt, typ in OVERRIDES.items():
        p.add_argument("--" + opt.replace("_", "-"), type=typ, default=None, dest=opt)
    p.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                   help="override any config key, e.g. --set loss.c_p=0.01 --set model.depth=4")
    p.add_argument("--quiet", action="store_true")
    add_recycling_arguments(p)
    hand_chirality.add_arguments(p)
    p.set_defaults(func=run)


def _set(config: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    d = config
    for k in keys[:-1]:
        d = d.setdefault(k, {})
        if not isinstance(d, dict):
            raise CrysError(f"--set {dotted}: {k} is not a section of the config.")
    d[keys[-1]] = value


def build_config(args: argparse.Namespace) -> dict[str, Any]:
    config = load_config(args.config)
    if args.resume and not args.config and (Path(args.out) / "config.json").exists():
        config = json.loads((Path(args.out) / "config.json").read_text())
    if args.data:
        config["data"] = args.data
    train = dict(config.get("train") or {})
    for opt in OVERRIDES:
        value = getattr(args, opt, None)
        if value is not None:
            train[opt] = value
    config["train"] = train
    for item in args.set:
        if "=" not in item:
            raise CrysError(f"--set {item}: write KEY=VALUE, e.g. loss.c_p=0.01.")
        key, raw = item.split("=", 1)
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw  # a bare word is a string: --set model.attention=exact
        _set(config, key, value)
    recycling = dict(config.get("recycling") or {})
    recycling.update({k: getattr(args, k) for k in RECYCLING_OPTIONS if getattr(args, k, None) is not None})
    if getattr(args, "no_transfer", False):
        recycling["transfer"] = False
    if recycling:
        config["recycling"] = recycling
    config["task"] = args.task
    return config


def run(args: argparse.Namespace) -> int:
    if args.task == "hand-chirality":
        return (hand_gated.run_cli if args.head == "gated" else hand_chirality.run_cli)(args)
    # torch from here on
    from crysplugins.training.loop import Trainer
    from crysplugins.training.tasks import get_task_factory

    config = build_config(args)
    factory = get_task_factory(args.task)
    if args.resume and not (Path(args.out) / "checkpoint.pt").is_file():
        raise CrysError(f"--resume: there is no checkpoint in {args.out} (checkpoint.pt); "
                        "leave out --resume to start a new run.")
    train_config(config)  # a bad Trainer setting is refused before the data are read
    task = factory(config)
    metrics = Trainer(task, args.out, config, resume=args.resume, quiet=args.quiet).fit()
    if metrics:
        print(json.dumps(dict(metrics), default=str))
    return 0
