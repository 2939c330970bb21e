"""``crysplugins train TASK --config FILE --out RUN_DIR [...]``: train a model with the shared Trainer.

Tasks come from :data:`crysplugins.training.tasks.TASKS` ("reccrysformer", "solvent-unet", ...).
``--config`` is a JSON file or the name of a config shipped in ``crysplugins/training/configs``
(e.g. ``reccrysformer_dipeptide``).  Command-line options override the config's "train" section.
Multi-GPU / multi-node: start the same command under ``torchrun --nproc_per_node N -m crysplugins.cli
train ...``; the Trainer picks up RANK/WORLD_SIZE and uses DistributedDataParallel.
"""
from __future__ import annotations

import argparse
import json
from importlib import resources
from pathlib import Path
from typing import Any

from crysplugins.errors import CrysError

#: command-line option -> Trainer key
OVERRIDES = {"epochs": int, "batch_size": int, "max_minutes": float, "max_steps": int, "seed": int,
             "threads": int, "lr": float, "max_lr": float, "accumulate": int, "eval_every_steps": int,
             "amp": str, "init_from": str}


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
    except ValueError as exc:
        raise CrysError(f"The config {path} is not valid JSON ({exc}).") from None


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
    from crysplugins.training.recycling import add_arguments as add_recycling_arguments  # issue #5

    add_recycling_arguments(p)
    from crysplugins.training.hand_chirality import add_arguments as add_hand_arguments

    add_hand_arguments(p)
    p.set_defaults(func=run)


def _set(config: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    d = config
    for k in keys[:-1]:
        d = d.setdefault(k, {})
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
            value = raw
        _set(config, key, value)
    from crysplugins.training.recycling import apply_arguments as apply_recycling_arguments  # issue #5

    apply_recycling_arguments(config, args)
    config["task"] = args.task
    return config


def run(args: argparse.Namespace) -> int:
    if args.task == "hand-chirality":  # a numpy fit, not a Trainer run (see crysplugins.training.hand_chirality)
        from crysplugins.training.hand_chirality import run_cli

        return run_cli(args)
    from crysplugins.training.loop import Trainer
    from crysplugins.training.tasks import get_task_factory

    config = build_config(args)
    factory = get_task_factory(args.task)
    task = factory(config)
    metrics = Trainer(task, args.out, config, resume=args.resume, quiet=args.quiet).fit()
    if metrics:
        print(json.dumps({k: v for k, v in metrics.items()}, default=str))
    return 0
