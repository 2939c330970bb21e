"""A generic training loop (``Trainer``) shared by every model of crysplugins.

A *task* supplies the model and the data (see ``docs/CONTRACTS.md``, "Training backend"):

* ``build_model(config) -> nn.Module``
* ``batches(split, epoch, rank, world_size)`` -> an iterable of dicts of tensors (a ``__len__`` lets the
  learning-rate schedule know the number of steps; every rank must get the same number of batches);
* ``loss(model, batch) -> (loss tensor, {name: float})``;
* ``evaluate(model) -> {name: float}`` (called on rank 0 only);
* ``export_example() -> tuple of tensors`` (inputs for ONNX export; used by ``export.py``);
* optional ``state() -> dict`` saved in checkpoints (e.g. normalisation constants).

The Trainer does AdamW (or Adam) with the OneCycle learning-rate schedule of the RecCrysFormer paper
(section 5: start 5e-4, maximum 1.4e-3, weight decay 3e-2 by default), gradient accumulation and clipping,
bf16/fp16 autocast on GPU, ``torch.set_float32_matmul_precision('high')``, checkpoints every few minutes
and at the end (``RUN_DIR/checkpoint.pt``; ``resume=True`` continues from it), deterministic seeds, a
progress line with loss and throughput, ``RUN_DIR/metrics.csv`` (one row per evaluation), TensorBoard
when installed, and DistributedDataParallel when started by ``torchrun`` (gloo on CPU, nccl on GPU).

With ``max_minutes`` set, the OneCycle schedule runs on *progress* = max(step fraction, time fraction),
so a run stopped by its time budget still ends with the annealed (small) learning rate.
"""
from __future__ import annotations

import csv
import json
import math
import os
import random
import signal
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

TRAIN_DEFAULTS: dict[str, Any] = {
    "epochs": 10,
    "batch_size": 16,
    "optimizer": "adamw",          # "adamw" or "adam"
    "lr": 5e-4,                    # starting learning rate (OneCycle initial)
    "max_lr": 1.4e-3,
    "final_lr": 5e-6,
    "pct_start": 0.3,
    "schedule": "onecycle",        # "onecycle" or "constant"
    "weight_decay": 3e-2,
    "accumulate": 1,
    "clip": 1.0,                   # gradient-norm clipping (0 = off)
    "amp": "bf16",                 # "bf16", "fp16" or "none" (GPU only; CPU always runs float32)
    "seed": 0,
    "max_minutes": None,
    "max_steps": None,             # optimizer steps (for smoke tests)
    "eval_every_steps": None,      # extra evaluations inside long epochs
    "checkpoint_minutes": 10.0,
    "log_every": 10,
    "threads": None,
    "init_from": None,             # fine-tuning: a run folder or checkpoint whose *model* weights start the run
}


def train_config(config: dict[str, Any] | None) -> dict[str, Any]:
    cfg = dict(TRAIN_DEFAULTS)
    cfg.update({k: v for k, v in (config or {}).items()})
    return cfg


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


def _to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in batch.items()}


def _batch_size(batch: dict[str, Any]) -> int:
    for v in batch.values():
        if torch.is_tensor(v) and v.dim() > 0:
            return int(v.shape[0])
    return 1


class Trainer:
    """Train ``task``'s model, writing checkpoints and metrics to ``out_dir``."""

    def __init__(self, task: Any, out_dir: str | os.PathLike, config: dict[str, Any] | None = None,
                 resume: bool = False, quiet: bool = False) -> None:
        """``config`` is the run's whole config: Trainer keys (TRAIN_DEFAULTS) are read from its top level
        and from its "train" section (which wins); the whole dict goes to ``task.build_model``."""
        self.task = task
        self.out = Path(out_dir)
        self.full_config = dict(config or {})
        # precedence: TRAIN_DEFAULTS < the task's own defaults (task.config) < config < config["train"]
        task_cfg = getattr(task, "config", None) or {}
        base = {k: v for k, v in task_cfg.items() if k in TRAIN_DEFAULTS}
        base.update({k: v for k, v in (task_cfg.get("train") or {}).items()} if isinstance(task_cfg.get("train"), dict) else {})
        flat = {k: v for k, v in self.full_config.items() if k in TRAIN_DEFAULTS}
        self.cfg = train_config({**base, **flat, **(self.full_config.get("train") or {})})
        self.resume = resume
        self.quiet = quiet
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self._stop = False

    # ------------------------------------------------------------------------------------ helpers
    def log(self, msg: str) -> None:
        if self.rank == 0 and not self.quiet:
            print(msg, file=sys.stderr, flush=True)

    def _setup(self) -> None:
        cfg = self.cfg
        if cfg["threads"]:
            torch.set_num_threads(int(cfg["threads"]))
        torch.set_float32_matmul_precision("high")
        if torch.cuda.is_available():
            self.device = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(self.device)
        else:
            self.device = torch.device("cpu")
        if self.world_size > 1 and not torch.distributed.is_initialized():
            backend = "nccl" if self.device.type == "cuda" else "gloo"
            torch.distributed.init_process_group(backend=backend)
        seed_everything(int(cfg["seed"]))
        if self.rank == 0:
            self.out.mkdir(parents=True, exist_ok=True)

    def _init_weights(self, model: nn.Module, source: str) -> None:
        """Load the model weights (not the optimizer or schedule) of a run folder or checkpoint file."""
        from crysplugins.errors import CrysError

        path = Path(source)
        if path.is_dir():
            path = path / "checkpoint.pt"
        if not path.is_file():
            raise CrysError(f"init_from: there is no checkpoint at {path}.")
        try:
            ckpt = torch.load(path, map_location=self.device, weights_only=False)
        except Exception as exc:
            raise CrysError(f"init_from: {path} cannot be read as a checkpoint "
                            f"({str(exc).splitlines()[0][:200]}).") from None
        if not isinstance(ckpt, dict) or "model" not in ckpt:
            raise CrysError(f"init_from: {path} is not a training checkpoint (it has no model weights).")
        try:
            model.load_state_dict(ckpt["model"])
        except RuntimeError as exc:
            raise CrysError(f"init_from: the weights in {path} do not fit this model "
                            f"({str(exc).splitlines()[0][:200]}).") from None
        self.log(f"initialised the model from {path} (step {ckpt.get('state', {}).get('step')})")

    def _amp(self):
        amp = self.cfg["amp"]
        if self.device.type != "cuda" or amp in (None, "none", False):
            return None
        return torch.bfloat16 if amp == "bf16" else torch.float16

    def _save(self, path: Path, state: dict[str, Any]) -> None:
        tmp = path.with_suffix(".tmp")
        torch.save(state, tmp)
        os.replace(tmp, path)

    def _write_metrics(self, row: dict[str, Any]) -> None:
        path = self.out / "metrics.csv"
        header: list[str] = []
        rows: list[dict[str, Any]] = []
        if path.exists():
            with open(path, newline="") as fh:
                reader = csv.DictReader(fh)
                header = list(reader.fieldnames or [])
                rows = list(reader)
        for k in row:
            if k not in header:
                header.append(k)
        rows.append(row)
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=header)
            writer.writeheader()
            for r in rows:
                writer.writerow({k: r.get(k, "") for k in header})
        os.replace(tmp, path)
        if self.tb is not None:
            for k, v in row.items():
                if isinstance(v, (int, float)) and k != "step":
                    self.tb.add_scalar(k, v, int(row.get("step", 0)))

    # --------------------------------------------------------------------------------------- fit
    def fit(self) -> dict[str, Any]:
        """Run the training; returns the last evaluation metrics (rank 0) or {} (other ranks)."""
        self._setup()
        cfg, task = self.cfg, self.task
        model = task.build_model(self.full_config).to(self.device)
        raw_model = model
        opt_cls = torch.optim.AdamW if cfg["optimizer"] == "adamw" else torch.optim.Adam
        decay, no_decay = [], []
        for name, p in model.named_parameters():
            (no_decay if p.dim() < 2 or "pos" in name or "residue_position" in name else decay).append(p)
        optimizer = opt_cls([{"params": decay, "weight_decay": float(cfg["weight_decay"])},
                             {"params": no_decay, "weight_decay": 0.0}], lr=float(cfg["lr"]))
        amp_dtype = self._amp()
        scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None

        state = {"step": 0, "epoch": 0, "batch": 0, "elapsed": 0.0, "examples": 0}
        ckpt_path = self.out / "checkpoint.pt"
        if self.resume and ckpt_path.exists():
            ckpt = torch.load(ckpt_path, map_location=self.device, weights_only=False)
            raw_model.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
            if scaler is not None and ckpt.get("scaler"):
                scaler.load_state_dict(ckpt["scaler"])
            state.update(ckpt["state"])
            torch.set_rng_state(ckpt["rng"]["torch"])
            np.random.set_state(ckpt["rng"]["numpy"])
            random.setstate(ckpt["rng"]["python"])
            self.log(f"resumed from {ckpt_path} at epoch {state['epoch']} batch {state['batch']} "
                     f"(step {state['step']})")
        elif cfg.get("init_from"):
            self._init_weights(raw_model, cfg["init_from"])
        if self.world_size > 1:
            model = nn.parallel.DistributedDataParallel(
                model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.tb = None
        if self.rank == 0:
            (self.out / "config.json").write_text(json.dumps(self.full_config, indent=2, default=str))
            try:
                from torch.utils.tensorboard import SummaryWriter  # optional
                self.tb = SummaryWriter(str(self.out / "tensorboard"))
            except Exception:
                self.tb = None

        def on_term(signum, frame):  # a polite stop: checkpoint at the next step
            self._stop = True
        old_handler = None
        try:
            old_handler = signal.signal(signal.SIGTERM, on_term)
        except ValueError:
            pass  # not in the main thread

        epochs = int(cfg["epochs"])
        accumulate = max(1, int(cfg["accumulate"]))
        first = task.batches("train", 0, self.rank, self.world_size)
        per_epoch = len(first) if hasattr(first, "__len__") else None
        total_steps = (epochs * per_epoch) // accumulate if per_epoch else None
        if cfg["max_steps"]:
            total_steps = min(total_steps or int(cfg["max_steps"]), int(cfg["max_steps"]))
        max_seconds = float(cfg["max_minutes"]) * 60 if cfg["max_minutes"] else None
        self.log(f"training: {epochs} epochs x {per_epoch} batches, accumulate {accumulate}, "
                 f"world size {self.world_size}, device {self.device}, "
                 f"{sum(p.numel() for p in raw_model.parameters()):,} parameters")

        t_start = time.monotonic() - state["elapsed"]
        last_ckpt = time.monotonic()
        last_metrics: dict[str, Any] = {}
        window = {"n": 0, "t": time.monotonic(), "sums": {}, "count": 0}

        def elapsed() -> float:
            return time.monotonic() - t_start

        def progress() -> float:
            fr = []
            if total_steps:
                fr.append(state["step"] / total_steps)
            if max_seconds:
                fr.append(elapsed() / max_seconds)
            return max(fr) if fr else 0.0

        def set_lr() -> float:
            if cfg["schedule"] == "onecycle":
                lr = onecycle_lr(progress(), float(cfg["lr"]), float(cfg["max_lr"]), float(cfg["final_lr"]),
                                 float(cfg["pct_start"]))
            else:
                lr = float(cfg["lr"])
            for g in optimizer.param_groups:
                g["lr"] = lr
            return lr

        def checkpoint() -> None:
            if self.rank != 0:
                return
            state["elapsed"] = elapsed()
            self._save(ckpt_path, {
                "model": raw_model.state_dict(), "optimizer": optimizer.state_dict(),
                "scaler": scaler.state_dict() if scaler is not None else None, "state": dict(state),
                "config": self.full_config, "task_state": getattr(task, "state", lambda: {})(),
                "model_config": getattr(raw_model, "config", None), "task": self.full_config.get("task"),
                "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
                        "python": random.getstate()},
            })

        def evaluate(tag: str) -> dict[str, Any]:
            frac = state["batch"] / per_epoch if per_epoch else 0.0
            row: dict[str, Any] = {"epoch": round(state["epoch"] + frac, 3),
                                   "step": state["step"], "minutes": round(elapsed() / 60, 2),
                                   "examples": state["examples"], "lr": optimizer.param_groups[0]["lr"], "tag": tag}
            if window["count"]:
                row.update({f"train_{k}": v / window["count"] for k, v in window["sums"].items()})
            if self.rank == 0:
                raw_model.eval()
                with torch.no_grad():
                    row.update(task.evaluate(raw_model))
                raw_model.train()
                self._write_metrics(row)
                self.log("eval " + " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                            for k, v in row.items()))
            window["sums"], window["count"] = {}, 0
            return row

        done = False
        model.train()
        while state["epoch"] < epochs and not done:
            batches = first if state["epoch"] == 0 else task.batches("train", state["epoch"], self.rank,
                                                                     self.world_size)
            first = None if state["epoch"] > 0 else first
            n_batches = len(batches) if hasattr(batches, "__len__") else None
            skip = state["batch"]
            iterator = ((i, batches[i]) for i in range(skip, n_batches)) if (
                skip and hasattr(batches, "__getitem__") and n_batches is not None) else enumerate(batches)
            for i, batch in iterator:
                if i < skip:
                    continue
                batch = _to_device(batch, self.device)
                lr = set_lr()
                micro = (i + 1) % accumulate != 0
                sync_ctx = model.no_sync() if (micro and self.world_size > 1) else _null()
                with sync_ctx:
                    if amp_dtype is not None:
                        with torch.autocast(self.device.type, dtype=amp_dtype):
                            loss, metrics = task.loss(model, batch)
                    else:
                        loss, metrics = task.loss(model, batch)
                    if not torch.isfinite(loss):
                        raise FloatingPointError(f"the loss became {float(loss)} at step {state['step']}")
                    scaled = loss / accumulate
                    (scaler.scale(scaled) if scaler is not None else scaled).backward()
                n = _batch_size(batch) * self.world_size
                state["examples"] += n
                window["n"] += n
                for k, v in metrics.items():
                    window["sums"][k] = window["sums"].get(k, 0.0) + float(v)
                window["count"] += 1
                state["batch"] = i + 1
                if micro:
                    continue
                if scaler is not None:
                    scaler.unscale_(optimizer)
                if cfg["clip"]:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), float(cfg["clip"]))
                if scaler is not None:
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                state["step"] += 1
                if state["step"] % int(cfg["log_every"]) == 0 or state["step"] == 1:
                    dt = max(1e-9, time.monotonic() - window["t"])
                    speed = window["n"] / dt
                    window["n"], window["t"] = 0, time.monotonic()
                    means = " ".join(f"{k} {v / max(1, window['count']):.4f}" for k, v in window["sums"].items())
                    self.log(f"epoch {state['epoch'] + 1}/{epochs} batch {i + 1}/{n_batches} step {state['step']} "
                             f"{means} | {speed:.2f} ex/s | lr {lr:.2e} | {elapsed() / 60:.1f} min")
                if cfg["eval_every_steps"] and state["step"] % int(cfg["eval_every_steps"]) == 0:
                    last_metrics = evaluate("interval")
                stop_now = self._stop
                if max_seconds and elapsed() >= max_seconds:
                    stop_now = True
                if cfg["max_steps"] and state["step"] >= int(cfg["max_steps"]):
                    stop_now = True
                if self.world_size > 1:  # every rank must agree to stop
                    flag = torch.tensor([1.0 if stop_now else 0.0], device=self.device)
                    torch.distributed.all_reduce(flag)
                    stop_now = bool(flag.item() > 0)
                if stop_now:
                    done = True
                    break
                if time.monotonic() - last_ckpt > 60 * float(cfg["checkpoint_minutes"]):
                    checkpoint()
                    last_ckpt = time.monotonic()
            if not done:
                state["epoch"] += 1
                state["batch"] = 0
                last_metrics = evaluate("epoch")
                checkpoint()
                last_ckpt = time.monotonic()
        if done:
            last_metrics = evaluate("final")
            checkpoint()
        if self.rank == 0:
            summary = {"state": {k: v for k, v in state.items()}, "metrics": last_metrics,
                       "minutes": round(elapsed() / 60, 2),
                       "examples_per_second": state["examples"] / max(1e-9, elapsed())}
            (self.out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
        if self.tb is not None:
            self.tb.close()
        if old_handler is not None:
            try:
                signal.signal(signal.SIGTERM, old_handler)
            except ValueError:
                pass
        if self.world_size > 1 and torch.distributed.is_initialized():
            torch.distributed.barrier()
            torch.distributed.destroy_process_group()
        return last_metrics if self.rank == 0 else {}


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
