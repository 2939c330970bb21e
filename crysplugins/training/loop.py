"""The training loop (``Trainer``) shared by every model of crysplugins.

A *task* (one module per task in :mod:`crysplugins.training.tasks`) supplies the model and the data:

* ``build_model(config) -> nn.Module``
* ``batches(split, epoch, rank, world_size)`` -> an iterable of dicts of tensors (a ``__len__`` lets the
  learning-rate schedule know the number of steps; every rank must get the same number of batches);
* ``loss(model, batch) -> (loss tensor, {name: float})``;
* ``evaluate(model) -> {name: float}`` (called on rank 0 only);
* ``export_example() -> dict of tensors`` (inputs for ONNX export; used by ``export.py``);
* optional ``state() -> dict`` saved in checkpoints (e.g. normalisation constants) and
  ``on_progress(fraction)`` called before every batch (e.g. a window-size schedule).

The Trainer does AdamW (or Adam) with the OneCycle learning-rate schedule of the RecCrysFormer paper
(section 5), or a cosine decay, gradient accumulation and clipping, bf16/fp16 autocast on GPU,
checkpoints every few minutes and at the end (:mod:`crysplugins.training.checkpoint`; ``resume=True``
continues from one), deterministic seeds, a progress line, ``RUN_DIR/metrics.csv`` (one row per
evaluation), TensorBoard when installed, and DistributedDataParallel when started by ``torchrun``.

With ``max_minutes`` set, the schedule runs on *progress* = max(step fraction, time fraction), so a run
stopped by its time budget still ends with the annealed (small) learning rate.
"""
from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import random
import signal
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from crysplugins.crystal.io import atomic_path
from crysplugins.errors import CrysError
from crysplugins.training.checkpoint import (load_checkpoint, load_weights, restore_rng, rng_state,
                                             save_checkpoint)
from crysplugins.training.config import TrainConfig, train_config


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


def onecycle_lr(progress: float, lr0: float, max_lr: float, final_lr: float, pct_start: float) -> float:
    """OneCycle (cosine) learning rate at ``progress`` in [0, 1]: lr0 -> max_lr -> final_lr."""
    progress = min(max(progress, 0.0), 1.0)
    if progress < pct_start:
        t = progress / pct_start
        return max_lr + (lr0 - max_lr) * (1 + math.cos(math.pi * t)) / 2
    t = (progress - pct_start) / max(1e-12, 1 - pct_start)
    return final_lr + (max_lr - final_lr) * (1 + math.cos(math.pi * t)) / 2


def learning_rate(cfg: TrainConfig, progress: float) -> float:
    if cfg.schedule == "onecycle":
        return onecycle_lr(progress, cfg.lr, cfg.max_lr, cfg.final_lr, cfg.pct_start)
    if cfg.schedule == "cosine":
        p = min(max(progress, 0.0), 1.0)
        return cfg.final_lr + 0.5 * (cfg.lr - cfg.final_lr) * (1 + math.cos(math.pi * p))
    return cfg.lr


def _to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in batch.items()}


def _batch_size(batch: dict[str, Any]) -> int:
    for v in batch.values():
        if torch.is_tensor(v) and v.dim() > 0:
            return int(v.shape[0])
    return 1


def _optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW/Adam without weight decay on biases, norms and position embeddings."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.dim() < 2 or "pos" in name or "residue_position" in name else decay).append(p)
    cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    return cls([{"params": decay, "weight_decay": cfg.weight_decay},
                {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)


def _batches_from(batches: Any, start: int):
    """(index, batch) pairs of an epoch from batch ``start`` on (a resumed epoch skips what it saw)."""
    if start and hasattr(batches, "__getitem__") and hasattr(batches, "__len__"):
        return ((i, batches[i]) for i in range(start, len(batches)))
    return ((i, b) for i, b in enumerate(batches) if i >= start)


@dataclass
class RunState:
    """Where a run is; saved in every checkpoint."""

    step: int = 0          # optimizer steps
    epoch: int = 0
    batch: int = 0         # batches done in the current epoch
    elapsed: float = 0.0   # seconds of training, summed over resumptions
    examples: int = 0
    best: float | None = None


class Trainer:
    """Train ``task``'s model, writing checkpoints and metrics to ``out_dir``."""

    def __init__(self, task: Any, out_dir: str | os.PathLike, config: dict[str, Any] | None = None,
                 resume: bool = False, quiet: bool = False) -> None:
        """``config`` is the run's whole config: Trainer keys come from its top level and its "train"
        section (which wins) over the task's own defaults; the whole dict goes to ``task.build_model``."""
        self.task = task
        self.out = Path(out_dir)
        self.full_config = dict(config or {})
        self.cfg = train_config(self.full_config, getattr(task, "config", None))
        self.resume = resume
        self.quiet = quiet
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.ckpt_path = self.out / "checkpoint.pt"
        self._stop = False
        self.tb = None

    def log(self, msg: str) -> None:
        if self.rank == 0 and not self.quiet:
            print(msg, file=sys.stderr, flush=True)

    # ------------------------------------------------------------------------------------ the loop
    def fit(self) -> dict[str, Any]:
        """Run the training; returns the last evaluation metrics (rank 0) or {} (other ranks)."""
        cfg, task = self.cfg, self.task
        self._setup()
        try:
            self.model = task.build_model(self.full_config).to(self.device)
        except (ValueError, TypeError) as exc:  # e.g. --set model.depth=notjson
            raise CrysError(f"The model settings do not work ({str(exc).splitlines()[0][:200]}).") from None
        self.optimizer = _optimizer(self.model, cfg)
        amp_dtype = ({"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.amp)
                     if self.device.type == "cuda" else None)  # CPU always runs float32
        self.scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
        self.state = self._restore()
        model = self.model
        if self.world_size > 1:
            model = nn.parallel.DistributedDataParallel(
                model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self._open_outputs()
        old_handler = self._catch_sigterm()

        state, accumulate = self.state, cfg.accumulate
        first = task.batches("train", state.epoch, self.rank, self.world_size)
        self.per_epoch = len(first) if hasattr(first, "__len__") else None
        total_steps = (cfg.epochs * self.per_epoch) // accumulate if self.per_epoch else None
        if cfg.max_steps:
            total_steps = min(total_steps or cfg.max_steps, cfg.max_steps)
        max_seconds = cfg.max_minutes * 60 if cfg.max_minutes else None
        self.log(f"training: {cfg.epochs} epochs x {self.per_epoch} batches, accumulate {accumulate}, "
                 f"world size {self.world_size}, device {self.device}, "
                 f"{sum(p.numel() for p in self.model.parameters()):,} parameters")
        self.t_start = time.monotonic() - state.elapsed
        last_ckpt = last_eval = time.monotonic()
        self.window: dict[str, Any] = {"n": 0, "t": time.monotonic(), "sums": {}, "count": 0}
        metrics: dict[str, Any] = {}
        stop = False
        model.train()
        while state.epoch < cfg.epochs and not stop:
            batches = first if first is not None else task.batches("train", state.epoch, self.rank,
                                                                   self.world_size)
            first = None
            for i, batch in _batches_from(batches, state.batch):
                fractions = ([state.step / total_steps] if total_steps else []) + (
                    [self._elapsed() / max_seconds] if max_seconds else [])
                progress = max(fractions) if fractions else 0.0
                if hasattr(task, "on_progress"):
                    task.on_progress(progress)
                lr = learning_rate(cfg, progress)
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
                batch = _to_device(batch, self.device)
                micro = (i + 1) % accumulate != 0
                sync = model.no_sync() if (micro and self.world_size > 1) else contextlib.nullcontext()
                with sync:
                    parts = self._backward(model, batch, amp_dtype)
                self._accumulate(parts, _batch_size(batch) * self.world_size)
                state.batch = i + 1
                if micro:
                    continue
                self._optimizer_step(model)
                state.step += 1
                if state.step % cfg.log_every == 0 or state.step == 1:
                    self._log_step(i, batches, lr)
                if ((cfg.eval_every_steps and state.step % cfg.eval_every_steps == 0) or
                        (cfg.eval_every_minutes and time.monotonic() - last_eval > 60 * cfg.eval_every_minutes)):
                    metrics = self._evaluate("interval")
                    last_eval = time.monotonic()
                stop = self._stop or bool(max_seconds and self._elapsed() >= max_seconds) or bool(
                    cfg.max_steps and state.step >= cfg.max_steps)
                stop = self._agree(stop)
                if stop:
                    break
                if time.monotonic() - last_ckpt > 60 * cfg.checkpoint_minutes:
                    self._checkpoint()
                    last_ckpt = time.monotonic()
            if not stop:
                state.epoch += 1
                state.batch = 0
                metrics = self._evaluate("epoch")
                self._checkpoint()
                last_ckpt = last_eval = time.monotonic()
        if stop:
            if metrics.get("step") != state.step:  # not evaluated at this step yet
                metrics = self._evaluate("final")
            self._checkpoint()
        self._finish(metrics, old_handler)
        return metrics if self.rank == 0 else {}

    # ------------------------------------------------------------------------------------ set-up
    def _setup(self) -> None:
        if self.cfg.threads:
            torch.set_num_threads(int(self.cfg.threads))
        torch.set_float32_matmul_precision("high")
        if torch.cuda.is_available():
            self.device = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(self.device)
        else:
            self.device = torch.device("cpu")
        if self.world_size > 1 and not torch.distributed.is_initialized():
            torch.distributed.init_process_group(backend="nccl" if self.device.type == "cuda" else "gloo")
        seed_everything(int(self.cfg.seed))
        if self.rank == 0:
            self.out.mkdir(parents=True, exist_ok=True)

    def _restore(self) -> RunState:
        """A resumed run's state (weights, optimizer, generators), else the ``init_from`` weights."""
        if self.resume:
            if not self.ckpt_path.is_file():
                raise CrysError(f"--resume: there is no checkpoint in {self.out} ({self.ckpt_path.name}); "
                                "leave out --resume to start a new run.")
            ckpt = load_checkpoint(self.ckpt_path, map_location=self.device)
            load_weights(self.model, ckpt)
            if ckpt.optimizer:
                self.optimizer.load_state_dict(ckpt.optimizer)
            if self.scaler is not None and ckpt.scaler:
                self.scaler.load_state_dict(ckpt.scaler)
            restore_rng(ckpt)
            state = RunState(**{k: v for k, v in ckpt.state.items() if k in RunState.__dataclass_fields__})
            self._forget_metrics_after(state.step)
            self.log(f"resumed from {self.ckpt_path} at epoch {state.epoch} batch {state.batch} "
                     f"(step {state.step})")
            return state
        if self.cfg.init_from:
            ckpt = load_checkpoint(self.cfg.init_from, map_location=self.device)
            load_weights(self.model, ckpt)
            self.log(f"initialised the model from {ckpt.path} (step {ckpt.state.get('step')})")
        return RunState()

    def _open_outputs(self) -> None:
        if self.rank != 0:
            return
        (self.out / "config.json").write_text(json.dumps(self.full_config, indent=2, default=str))
        try:
            from torch.utils.tensorboard import SummaryWriter  # optional: tensorboard may be absent
            self.tb = SummaryWriter(str(self.out / "tensorboard"))
        except Exception:
            self.tb = None

    def _catch_sigterm(self) -> Any:
        """SIGTERM asks for a polite stop: evaluate and checkpoint after the current step."""
        def on_term(signum, frame):  # noqa: ANN001
            self._stop = True
        try:
            return signal.signal(signal.SIGTERM, on_term)
        except ValueError:  # not in the main thread
            return None

    # ------------------------------------------------------------------------------------ per step
    def _backward(self, model: nn.Module, batch: dict[str, Any], amp_dtype: torch.dtype | None) -> dict[str, float]:
        """Loss of one (micro-)batch, its gradients accumulated; returns the task's loss terms."""
        autocast = (torch.autocast(self.device.type, dtype=amp_dtype) if amp_dtype is not None
                    else contextlib.nullcontext())
        with autocast:
            loss, parts = self.task.loss(model, batch)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"the loss became {float(loss)} at step {self.state.step}")
        scaled = loss / self.cfg.accumulate
        (self.scaler.scale(scaled) if self.scaler is not None else scaled).backward()
        return parts

    def _optimizer_step(self, model: nn.Module) -> None:
        """Unscale (fp16), clip, step and clear the gradients."""
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        if self.cfg.clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), self.cfg.clip)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def _elapsed(self) -> float:
        return time.monotonic() - self.t_start

    def _accumulate(self, parts: dict[str, float], n: int) -> None:
        self.state.examples += n
        self.window["n"] += n
        for k, v in parts.items():
            self.window["sums"][k] = self.window["sums"].get(k, 0.0) + float(v)
        self.window["count"] += 1

    def _log_step(self, i: int, batches: Any, lr: float) -> None:
        w, s = self.window, self.state
        speed = w["n"] / max(1e-9, time.monotonic() - w["t"])
        w["n"], w["t"] = 0, time.monotonic()
        means = " ".join(f"{k} {v / max(1, w['count']):.4f}" for k, v in w["sums"].items())
        n_batches = len(batches) if hasattr(batches, "__len__") else None
        self.log(f"epoch {s.epoch + 1}/{self.cfg.epochs} batch {i + 1}/{n_batches} step {s.step} {means} | "
                 f"{speed:.2f} ex/s | lr {lr:.2e} | {self._elapsed() / 60:.1f} min")

    def _agree(self, stop: bool) -> bool:
        """Every rank must agree to stop."""
        if self.world_size == 1:
            return stop
        flag = torch.tensor([1.0 if stop else 0.0], device=self.device)
        torch.distributed.all_reduce(flag)
        return bool(flag.item() > 0)

    def _evaluate(self, tag: str) -> dict[str, Any]:
        s = self.state
        frac = s.batch / self.per_epoch if self.per_epoch else 0.0
        row: dict[str, Any] = {"epoch": round(s.epoch + frac, 3), "step": s.step,
                               "minutes": round(self._elapsed() / 60, 2), "examples": s.examples,
                               "lr": self.optimizer.param_groups[0]["lr"], "tag": tag}
        if self.window["count"]:
            row.update({f"train_{k}": v / self.window["count"] for k, v in self.window["sums"].items()})
        if self.rank == 0:
            self.model.eval()
            with torch.no_grad():
                row.update(self.task.evaluate(self.model))
            self.model.train()
            self._write_metrics(row)
            self._keep_best(row)
            self.log("eval " + " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                        for k, v in row.items()))
        self.window["sums"], self.window["count"] = {}, 0
        return row

    def _keep_best(self, row: dict[str, Any]) -> None:
        name = self.cfg.best_metric
        if not name:
            return
        value = row.get(name)
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            return
        if self.state.best is None or value > self.state.best:
            self.state.best = float(value)
            self._checkpoint(self.out / "best.pt")

    def _checkpoint(self, path: Path | None = None) -> None:
        if self.rank != 0:
            return
        self.state.elapsed = self._elapsed()
        meta = {"state": asdict(self.state), "config": self.full_config, "task": self.full_config.get("task"),
                "task_state": getattr(self.task, "state", lambda: {})(),
                "model_config": getattr(self.model, "config", None), "rng": rng_state()}
        save_checkpoint(path or self.ckpt_path, self.model.state_dict(), meta,
                        optimizer=self.optimizer.state_dict(),
                        scaler=self.scaler.state_dict() if self.scaler is not None else None,
                        rng_torch=torch.get_rng_state())

    # ------------------------------------------------------------------------------------ metrics
    def _read_metrics(self) -> tuple[list[str], list[dict[str, Any]]]:
        path = self.out / "metrics.csv"
        if not path.exists():
            return [], []
        with open(path, newline="") as fh:
            reader = csv.DictReader(fh)
            return list(reader.fieldnames or []), list(reader)

    def _save_metrics(self, header: list[str], rows: list[dict[str, Any]]) -> None:
        with atomic_path(self.out / "metrics.csv") as tmp:
            with open(tmp, "w", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=header)
                writer.writeheader()
                for r in rows:
                    writer.writerow({k: r.get(k, "") for k in header})

    def _forget_metrics_after(self, step: int) -> None:
        """Rows written after the checkpoint a run resumes from describe lost work: the resumed run
        writes them again, so they go (no step appears twice)."""
        if self.rank != 0:
            return
        header, rows = self._read_metrics()
        kept = [r for r in rows if not str(r.get("step", "")).isdigit() or int(r["step"]) <= step]
        if len(kept) != len(rows):
            self._save_metrics(header, kept)

    def _write_metrics(self, row: dict[str, Any]) -> None:
        header, rows = self._read_metrics()
        rows = [r for r in rows if (str(r.get("step")), r.get("tag")) != (str(row["step"]), row["tag"])]
        header += [k for k in row if k not in header]
        self._save_metrics(header, rows + [row])
        if self.tb is not None:
            for k, v in row.items():
                if isinstance(v, (int, float)) and k != "step":
                    self.tb.add_scalar(k, v, int(row.get("step", 0)))

    def _finish(self, metrics: dict[str, Any], old_handler: Any) -> None:
        if self.rank == 0:
            summary = {"state": asdict(self.state), "metrics": metrics, "minutes": round(self._elapsed() / 60, 2),
                       "examples_per_second": self.state.examples / max(1e-9, self._elapsed())}
            (self.out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
        if self.tb is not None:
            self.tb.close()
        if old_handler is not None:
            with contextlib.suppress(ValueError):
                signal.signal(signal.SIGTERM, old_handler)
        if self.world_size > 1 and torch.distributed.is_initialized():
            torch.distributed.barrier()
            torch.distributed.destroy_process_group()
