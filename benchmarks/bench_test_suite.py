"""Size and wall time of the whole test suite, as the CI runs it (offscreen Qt, every test collected).

Runs ``python -m pytest -q`` in the repository with a JUnit report and counts the outcomes.  The time is
wall-clock on whatever machine runs it, so it is only comparable on the same machine at the same load (the
figure records the load average).  Writes ``benchmarks/out/test_suite.json``; the report and the log go to
``benchmarks/out/test_suite/``.  (``.ci/run`` does the same after a fresh install from a clone.)

    python benchmarks/bench_test_suite.py
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

from figure_output import OUT, REPO, write_figure


def counts(junit: str) -> dict[str, int]:
    """Tests, failures, errors and skips summed over the report's test suites."""
    root = ET.parse(junit).getroot()
    suites = [root] if root.tag == "testsuite" else list(root)
    total = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
    total["passed"] = total["tests"] - total["failures"] - total["errors"] - total["skipped"]
    return total


def main() -> int:
    raw = OUT / "test_suite"
    raw.mkdir(parents=True, exist_ok=True)
    junit = raw / "junit.xml"
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}"],
                          cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    (raw / "pytest.log").write_text(proc.stdout + proc.stderr)
    result = {"exit_code": proc.returncode, "wall_s": round(wall, 1), **counts(str(junit)),
              "last_line": (proc.stdout.strip().splitlines() or [""])[-1]}
    print(result)
    write_figure("test_suite", result, wall)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
