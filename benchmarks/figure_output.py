"""Write one figure's result to ``benchmarks/out/<figure>.json`` with when, where and how it was measured.

Every figure script calls :func:`write_figure` once, at the end, so a figure file always says its date
(UTC), the machine (CPU count, load average at the end, Python and library versions), the exact command
and the commit it ran on.  Bulky raw output (per-example records, logs) goes into ``benchmarks/out/<figure>/``,
which git ignores; the small ``<figure>.json`` files are committed beside BENCHMARKS.md.
"""
from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import gemmi
import numpy

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "out"


def _commit() -> str | None:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+uncommitted changes" if dirty else "")


def machine() -> dict[str, Any]:
    """What the figure ran on; the load average says how much of the machine it had."""
    return {"cpus": os.cpu_count(), "loadavg": [round(x, 2) for x in os.getloadavg()],
            "platform": platform.platform(), "python": platform.python_version(),
            "numpy": numpy.__version__, "gemmi": gemmi.__version__,
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}


def write_figure(figure: str, results: dict[str, Any], seconds: float | None = None) -> Path:
    """Write ``benchmarks/out/<figure>.json`` (atomically) and return its path."""
    OUT.mkdir(parents=True, exist_ok=True)
    payload = {"figure": figure, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
               "command": " ".join(shlex.quote(a) for a in ["python", *sys.argv]), "commit": _commit(),
               "machine": machine(), "seconds": None if seconds is None else round(seconds, 1), **results}
    path = OUT / f"{figure}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=1, default=str) + "\n")
    tmp.replace(path)
    print(f"wrote {path.relative_to(REPO)}", flush=True)
    return path
