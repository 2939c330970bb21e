"""Keep a training run that spans several sittings in one committed folder (``training_runs/<model>/``).

A CPU run that needs more than one session continues from the committed weights (``--init-from``) into a
new run folder.  When that sitting ends, :func:`append_sitting` brings it back into the committed folder:
its ``metrics.csv`` rows are appended with examples, steps, minutes and epochs counted on from the earlier
sittings (so the learning curve is one line), the checkpoint is rewritten weights only (no optimizer state,
no RNG) and its config and summary replace the old ones, the summary listing every sitting.

    python -m crysplugins.training.sittings runs/frag-v3 training_runs/reccrysformer_fragments
"""
from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from crysplugins.errors import CrysError
from crysplugins.training.checkpoint import load_checkpoint, save_checkpoint

#: metrics.csv columns that count on across sittings
COUNTED = ("examples", "step", "minutes", "epoch")


def read_metrics(path: Path) -> list[dict[str, str]]:
    """The rows of a run's metrics.csv; a missing or empty file is refused in one sentence."""
    if not path.is_file():
        raise CrysError(f"There is no metrics.csv at {path}.")
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or any(k not in rows[0] for k in COUNTED):
        raise CrysError(f"{path} holds no evaluation rows with {', '.join(COUNTED)}.")
    return rows


def counted_on(rows: list[dict[str, str]], offset: dict[str, float]) -> list[dict[str, str]]:
    """``rows`` with each counted column increased by ``offset`` (the earlier sittings' last row)."""
    out = []
    for row in rows:
        row = dict(row)
        for key in COUNTED:
            value = float(row[key]) + offset[key]
            row[key] = str(int(round(value))) if key in ("examples", "step") else f"{value:.3f}"
        out.append(row)
    return out


def append_sitting(run: str | Path, dest: str | Path) -> dict[str, Any]:
    """Bring the finished sitting ``run`` into the committed folder ``dest``; returns the new summary."""
    run, dest = Path(run), Path(dest)
    old = read_metrics(dest / "metrics.csv")
    new = read_metrics(run / "metrics.csv")
    offset = {key: float(old[-1][key]) for key in COUNTED}
    rows = old + counted_on(new, offset)
    fields = list(old[0].keys()) + [k for k in new[0].keys() if k not in old[0]]
    ckpt = load_checkpoint(run)
    meta = {k: v for k, v in ckpt.meta.items() if k != "format"}
    state = dict(meta.get("state") or {})
    state.update(examples=int(rows[-1]["examples"]), step=int(rows[-1]["step"]))
    meta["state"] = state
    summary = json.loads((dest / "summary.json").read_text()) if (dest / "summary.json").is_file() else {}
    sittings = summary.get("sittings") or [{"examples": int(offset["examples"]), "minutes": offset["minutes"]}]
    sittings.append({"examples": int(float(new[-1]["examples"])), "minutes": float(new[-1]["minutes"]),
                     "from": str(dest)})
    summary.update(sittings=sittings, examples=int(rows[-1]["examples"]), minutes=float(rows[-1]["minutes"]),
                   last=rows[-1])
    with open(dest / "metrics.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields, restval="")
        writer.writeheader()
        writer.writerows(rows)
    save_checkpoint(dest / "checkpoint.pt", ckpt.model, meta)
    shutil.copy(run / "config.json", dest / "config.json")
    (dest / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m crysplugins.training.sittings", description=__doc__.splitlines()[0])
    p.add_argument("run", help="the finished sitting's run folder")
    p.add_argument("dest", help="the committed folder (training_runs/<model>)")
    args = p.parse_args(argv)
    try:
        summary = append_sitting(args.run, args.dest)
    except CrysError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{args.dest}: {len(summary['sittings'])} sittings, {summary['examples']} examples, "
          f"{summary['minutes']:.0f} min")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
