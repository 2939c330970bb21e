"""The README's "Command line" section runs as written: every command line of its ```bash blocks, in order,
in an empty folder, with the installed ``crysplugins``.

Lines that need something a fresh install does not have (a dataset built from ../shared) end in a
comment starting ``# (needs``; they are left out here, and there may be only a few of them.
"""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
SKIP_MARK = "# (needs"


def section_lines(text: str, title: str = "## Command line") -> list[str]:
    """The command lines of the section's ```bash blocks, continuation lines joined."""
    section = text.split(title + "\n", 1)[1].split("\n## ", 1)[0]
    lines: list[str] = []
    for block in section.split("```bash\n")[1:]:
        pending = ""
        for raw in block.split("```", 1)[0].splitlines():
            if raw.rstrip().endswith("\\"):
                pending += raw.strip()[:-1].rstrip() + " "
                continue
            line = pending + raw.strip()
            pending = ""
            if line and not line.startswith("#"):
                lines.append(line)
    return lines


def crysplugins_command() -> list[str]:
    """The ``crysplugins`` script of the test environment (else the module, with this interpreter)."""
    script = Path(sys.executable).with_name("crysplugins")
    return [str(script)] if script.exists() else [sys.executable, "-m", "crysplugins.cli"]


def test_section_is_found_and_marked_lines_are_few():
    lines = section_lines(README.read_text())
    assert len(lines) >= 10
    assert all(line.split()[0] == "crysplugins" for line in lines), lines
    skipped = [line for line in lines if SKIP_MARK in line]
    assert len(skipped) <= 1, skipped


def test_every_example_writes_its_own_folder():
    outs = [shlex.split(line, comments=True) for line in section_lines(README.read_text())]
    folders = [args[args.index("--out") + 1] for args in outs if "--out" in args]
    assert len(folders) == len(set(folders)), folders


def test_readme_command_lines_run(tmp_path):
    lines = [line for line in section_lines(README.read_text()) if SKIP_MARK not in line]
    env = {k: v for k, v in os.environ.items() if k != "CRYSPLUGINS_MODELS"}  # the shipped models only
    for line in lines:
        args = shlex.split(line, comments=True)
        proc = subprocess.run(crysplugins_command() + args[1:], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=300)
        assert proc.returncode == 0, f"{line}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
        assert "Traceback" not in proc.stderr, line
        if "--json" in args:
            json.loads(proc.stdout)
        if "--out" in args:
            out = tmp_path / args[args.index("--out") + 1]
            assert out.is_dir() and any(out.iterdir()), line
            if args[1] == "predict":
                result = json.loads((out / "result.json").read_text())
                assert all(Path(out.parent, p).exists() or Path(p).exists() for p in result["files"].values())
    assert (tmp_path / "ex" / "fragment" / "2XHE_1_460_amplitudes.mtz").exists()
    # the second run into the same folder is refused rather than mixed with the first
    again = subprocess.run(crysplugins_command() + ["predict", "charge-flipping", "--reflections",
                           "ex/fragment/2XHE_1_460_amplitudes.mtz", "--sequence", "TM", "--out", "out-mask"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode != 0 and "not empty" in again.stderr
    assert not (tmp_path / "out-mask" / "density.ccp4").exists()


@pytest.mark.parametrize("text, expected", [
    ("## Command line\n```bash\ncrysplugins a \\\n    --b c   # note\n# comment\n```\n## Next\n```bash\nx\n```",
     ["crysplugins a --b c   # note"]),
])
def test_section_lines_joins_continuations(text, expected):
    assert section_lines(text) == expected
