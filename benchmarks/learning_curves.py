"""Learning curves of the shipped models: examples seen against the held-out test Pearson (paper 000,
eq. 7), with the mean-map baseline (CALIBRATION.md: the mean training density of the same grid shape).

A model's training run is committed beside the repository's models as ``training_runs/<model>/``
(``metrics.csv``, ``config.json`` and a weights-only checkpoint to resume from with ``--init-from``).  A
shipped model without such a folder was trained before runs were kept; it is listed with its card's final
figures only.  Writes ``benchmarks/out/learning_curves.json`` and ``benchmarks/out/learning_curves.png``.

    python benchmarks/learning_curves.py
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

from figure_output import OUT, REPO, write_figure


def curve(metrics: Path) -> list[dict]:
    """(examples seen, test Pearson, baseline Pearson) of every evaluation row of a run's metrics.csv."""
    with open(metrics, newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("test_pearson")]
    return [{"examples": int(float(r["examples"])), "step": int(float(r["step"])), "minutes": float(r["minutes"]),
             "test_pearson": float(r["test_pearson"]),
             "baseline_pearson": float(r["test_baseline_pearson"]) if r.get("test_baseline_pearson") else None}
            for r in rows]


def shipped_models() -> list[dict]:
    out = []
    for path in sorted((REPO / "models").glob("*.json")):
        card = json.loads(path.read_text())
        if card.get("task") != "reccrysformer":
            continue
        run = REPO / "training_runs" / card["name"] / "metrics.csv"
        metrics = card.get("metrics") or {}
        out.append({"model": card["name"], "run": str(run.relative_to(REPO)) if run.exists() else None,
                    "curve": curve(run) if run.exists() else [],
                    "card_test_pearson": metrics.get("mean_pearson"),
                    "card_baseline_pearson": metrics.get("baseline_mean_pearson"),
                    "card_examples_seen": (card.get("training") or {}).get("examples_seen")})
    return out


def plot(models: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for m in models:
        if m["curve"]:
            x = [r["examples"] for r in m["curve"]]
            line, = ax.plot(x, [r["test_pearson"] for r in m["curve"]], marker="o", ms=3, label=m["model"])
            ax.plot(x, [r["baseline_pearson"] for r in m["curve"]], ls="--", color=line.get_color(),
                    label=f"{m['model']}: mean-map baseline")
        elif m["card_test_pearson"] is not None and m["card_examples_seen"]:
            ax.scatter([m["card_examples_seen"]], [m["card_test_pearson"]], marker="*", s=80,
                       label=f"{m['model']} (card, no committed run)")
    ax.set_xlabel("training examples seen")
    ax.set_ylabel("held-out test map Pearson (eq. 7)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    models = shipped_models()
    plot(models, OUT / "learning_curves.png")
    write_figure("learning_curves", {"models": models, "plot": "benchmarks/out/learning_curves.png"})
    for m in models:
        last = m["curve"][-1] if m["curve"] else None
        print(m["model"], "run:", m["run"], "last:", last, "card:", m["card_test_pearson"])


if __name__ == "__main__":
    main()
