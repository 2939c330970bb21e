"""The Trainer's settings as a typed dataclass (the "train" section of a run's config).

Defaults follow the RecCrysFormer paper, section 5: AdamW with weight decay 3e-2 and a OneCycle schedule
from 5e-4 up to 1.4e-3.  A key the dataclass does not know is refused: a typo must not pass silently.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from crysplugins.errors import CrysError

OPTIMIZERS = ("adamw", "adam")
SCHEDULES = ("onecycle", "cosine", "constant")
AMP_MODES = ("bf16", "fp16", "none")


@dataclass
class TrainConfig:
    """Trainer settings; learning rates are per optimizer step, times in minutes."""

    epochs: int = 10
    batch_size: int = 16
    optimizer: str = "adamw"
    lr: float = 5e-4                    # OneCycle start (cosine: start; constant: the rate)
    max_lr: float = 1.4e-3              # OneCycle peak
    final_lr: float = 5e-6              # OneCycle and cosine end
    pct_start: float = 0.3              # OneCycle warm-up fraction
    schedule: str = "onecycle"
    weight_decay: float = 3e-2
    accumulate: int = 1                 # micro-batches per optimizer step
    clip: float = 1.0                   # gradient-norm clipping (0 = off)
    amp: str = "bf16"                   # GPU only; CPU always runs float32
    seed: int = 0
    max_minutes: float | None = None
    max_steps: int | None = None        # optimizer steps (smoke tests)
    eval_every_steps: int | None = None  # extra evaluations inside long epochs
    eval_every_minutes: float | None = None
    checkpoint_minutes: float = 10.0
    log_every: int = 10
    threads: int | None = None
    init_from: str | None = None        # a run folder or checkpoint whose model weights start the run
    best_metric: str | None = None      # keep RUN_DIR/best.pt at the highest value of this metric

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        refuse_unknown(cls, values, "training")
        cfg = cls(**values)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        """One sentence for a setting that would break the run later (NaN, zero, an unknown name)."""
        def finite(name: str, minimum: float, allow_none: bool = False) -> None:
            value = getattr(self, name)
            if value is None and allow_none:
                return
            try:
                ok = math.isfinite(float(value)) and float(value) >= minimum
            except (TypeError, ValueError):
                ok = False
            if not ok:
                raise CrysError(f"The training setting {name} must be a number >= {minimum:g}, not {value!r}.")

        for name in ("lr", "max_lr", "final_lr", "weight_decay", "clip"):
            finite(name, 0.0)
        for name in ("epochs", "batch_size", "accumulate", "log_every"):
            finite(name, 1)
        finite("pct_start", 0.0)
        finite("checkpoint_minutes", 0.0)
        for name in ("max_minutes", "eval_every_minutes"):
            finite(name, 1e-9, allow_none=True)
        for name in ("max_steps", "eval_every_steps", "threads"):
            finite(name, 1, allow_none=True)
        for name, allowed in (("optimizer", OPTIMIZERS), ("schedule", SCHEDULES)):
            if getattr(self, name) not in allowed:
                raise CrysError(f"The training setting {name} must be one of {', '.join(allowed)}.")
        if self.amp in (None, False):
            self.amp = "none"
        if self.amp not in AMP_MODES:
            raise CrysError(f"The training setting amp must be one of {', '.join(AMP_MODES)}.")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def train_config(config: dict[str, Any], task_config: dict[str, Any] | None = None) -> TrainConfig:
    """The Trainer settings of a run: defaults < the task's own defaults < the config's top-level Trainer
    keys < its "train" section."""
    known = {f.name for f in fields(TrainConfig)}
    task_config = task_config or {}
    merged: dict[str, Any] = {k: v for k, v in task_config.items() if k in known}
    if isinstance(task_config.get("train"), dict):
        merged.update(task_config["train"])
    merged.update({k: v for k, v in config.items() if k in known})
    merged.update(config.get("train") or {})
    return TrainConfig.from_dict(merged)


def refuse_unknown(settings_class: type, values: Any, what: str) -> None:
    """One sentence naming the keys of ``values`` that the settings dataclass does not have (a typo in a
    config must not pass silently); ``what`` names the settings ("training", "loss", ...)."""
    known = {f.name for f in fields(settings_class)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise CrysError(f"Unknown {what} setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}.")
