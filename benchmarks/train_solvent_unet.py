"""Train the slim solvent U-net on CPU with a minimal loop over SolventUNetTask's methods.

The shared Trainer (crysplugins/training/loop.py) was not available when this run had to start, so this
script drives the task's ``batches`` / ``loss`` / ``evaluate`` itself: Adam, a cosine learning-rate decay
from ``--lr`` to ``--lr-min``, a window-size schedule (small windows first for speed, 48³ at the end),
checkpoints every few minutes with resume (RUN_DIR/checkpoint.pt), RUN_DIR/metrics.csv, and the best
model by validation accuracy in RUN_DIR/best.pt.  Training data: data_build/solvent/*.npz built by
benchmarks/build_solvent_sources.py from ../shared/corpus.

    OMP_NUM_THREADS=1 nohup nice -n 5 python benchmarks/train_solvent_unet.py --minutes 60 &
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import time
from pathlib import Path

import torch

from crysplugins.training.solvent_task import SolventUNetTask


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run-dir", default="runs/solvent-unet")
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--base", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--lr-min", type=float, default=1e-4)
    ap.add_argument("--schedule", default="32x8:0.7,48x4:0.3",
                    help="window x batch : fraction of the time budget, in order")
    ap.add_argument("--eval-every", type=float, default=4.0, help="minutes between evaluations/checkpoints")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--init", default=None,
                    help="start from the weights of this checkpoint (fine-tuning; new optimizer and schedule)")
    ap.add_argument("--phase-error-range", type=float, nargs=2, default=(35.0, 80.0), metavar=("LO", "HI"),
                    help="mean phase errors (degrees) drawn for the training maps")
    ap.add_argument("--val-phase-error", type=float, default=65.0, help="mean phase error of the validation maps")
    ap.add_argument("--data", default="data_build/solvent",
                    help="folder with train_sources.npz and val_sources.npz (benchmarks/build_solvent_sources.py)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    run = Path(args.run_dir)
    run.mkdir(parents=True, exist_ok=True)
    phases = []
    for part in args.schedule.split(","):
        wb, frac = part.split(":")
        w, b = wb.split("x")
        phases.append((int(w), int(b), float(frac)))

    task = SolventUNetTask({"base": args.base, "sources": str(Path(args.data) / "train_sources.npz"),
                            "val_sources": str(Path(args.data) / "val_sources.npz"),
                            "phase_error_range": list(args.phase_error_range),
                            "val_phase_error": args.val_phase_error})
    model = task.build_model()
    if args.init and not (run / "checkpoint.pt").exists():
        model.load_state_dict(torch.load(args.init, weights_only=False)["model"])
        task.config["init"] = args.init
        print(f"initialised from {args.init}", flush=True)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    state = {"step": 0, "elapsed": 0.0, "best": 0.0}
    ckpt = run / "checkpoint.pt"
    if ckpt.exists():
        saved = torch.load(ckpt, weights_only=False)
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["opt"])
        state = saved["state"]
        print(f"resumed at step {state['step']} ({state['elapsed'] / 60:.1f} min)", flush=True)
    (run / "config.json").write_text(json.dumps({**task.config, "lr": args.lr, "lr_min": args.lr_min,
                                                 "schedule": args.schedule, "init": args.init, "trainer": "benchmarks/train_solvent_unet.py"},
                                                indent=1))
    budget = args.minutes * 60.0
    metrics_path = run / "metrics.csv"
    new_file = not metrics_path.exists()
    mfile = open(metrics_path, "a", newline="")
    writer = csv.writer(mfile)
    if new_file:
        writer.writerow(["step", "minutes", "window", "lr", "train_loss", "train_accuracy", "val_loss",
                         "val_accuracy", "val_precision", "val_recall"])

    def save(path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "state": state,
                    "config": task.config}, tmp)
        tmp.replace(path)

    t_start = time.time() - state["elapsed"]
    last_eval = state["elapsed"]
    run_loss, run_acc, n_run = 0.0, 0.0, 0
    model.train()
    while True:
        elapsed = time.time() - t_start
        if elapsed >= budget:
            break
        frac = elapsed / budget
        acc_frac = 0.0
        for w, b, f in phases:
            acc_frac += f
            if frac < acc_frac:
                break
        if task.config["window"] != w:
            task.set_window(w)
        task.config["batch_size"] = b
        lr = args.lr_min + 0.5 * (args.lr - args.lr_min) * (1 + math.cos(math.pi * frac))
        for g in opt.param_groups:
            g["lr"] = lr
        task.config["steps_per_epoch"] = 1
        batch = next(iter(task.batches("train")))
        loss, m = task.loss(model, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        state["step"] += 1
        run_loss += m["loss"]; run_acc += m["accuracy"]; n_run += 1
        state["elapsed"] = time.time() - t_start
        if state["elapsed"] - last_eval >= args.eval_every * 60 or state["elapsed"] >= budget:
            last_eval = state["elapsed"]
            ev = task.evaluate(model)
            writer.writerow([state["step"], round(state["elapsed"] / 60, 2), w, f"{lr:.2e}",
                             round(run_loss / n_run, 4), round(run_acc / n_run, 4), round(ev["val_loss"], 4),
                             round(ev["val_accuracy"], 4), round(ev["val_precision"], 4), round(ev["val_recall"], 4)])
            mfile.flush()
            print(f"step {state['step']} {state['elapsed'] / 60:.1f} min w{w} lr {lr:.1e} "
                  f"train {run_loss / n_run:.4f}/{run_acc / n_run:.3f} val {ev}", flush=True)
            run_loss, run_acc, n_run = 0.0, 0.0, 0
            if ev["val_accuracy"] > state["best"]:
                state["best"] = ev["val_accuracy"]
                save(run / "best.pt")
            save(ckpt)
    save(run / "final.pt")
    print(f"done: {state['step']} steps, best val accuracy {state['best']:.4f}", flush=True)


if __name__ == "__main__":
    main()
