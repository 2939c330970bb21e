"""Bounded fuzzing of the map and MTZ readers: mutated copies of the fixtures must end in a result or in
one clean refusal (a CrysError), never in a traceback or a signal.

The mutations are drawn with a fixed seed from the CCP4 and MTZ fixtures in tests/data: random byte
changes, truncations, and chosen header fields set to hostile values (0, -1, huge, NaN, infinity; for MTZ
the text records NCOL, CELL, SYMINF, COLUMN...).  Files are read in child processes, a batch per child;
the child announces each file before reading it, so a signal is pinned on the file that caused it and
the rest of the batch runs again in a fresh child.
"""
from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parent / "data"
FIXTURES = ("gui_tiny.ccp4", "coot_map.ccp4", "gui_tiny.mtz", "coot_data.mtz")
PER_FIXTURE = 60
SEED = 20261206
BATCH = 40

#: read one file per line of stdin; print START before and one JSON result line after each
WORKER = r'''
import json, sys, traceback
import numpy as np
from crysplugins.errors import CrysError
from crysplugins.crystal import io

def use(path):
    if path.endswith(".ccp4"):
        cmap = io.read_map(path)
        cmap.describe()
        return float(np.mean(cmap.array))
    refl = io.read_mtz(path, need=("F",), want=("SIGF", "PHI"))
    refl.describe()
    amp = refl.amplitudes()
    if refl.has("PHI"):
        refl.mtz.transform_f_phi_to_map(refl.label("F"), refl.label("PHI"), sample_rate=2.0)
    return float(np.nanmean(amp))

for line in sys.stdin:
    path = line.strip()
    print("START " + path, flush=True)
    try:
        use(path)
        out = {"path": path, "status": "result"}
    except CrysError as exc:
        out = {"path": path, "status": "refused", "message": str(exc)}
    except BaseException as exc:
        out = {"path": path, "status": "traceback", "message": traceback.format_exc()[-800:]}
    print("END " + json.dumps(out), flush=True)
'''

HOSTILE_INTS = (0, -1, 1, 2, 3, 7, 80, 1023, 2 ** 16, 2 ** 31 - 1, -(2 ** 31))
HOSTILE_FLOATS = (0.0, -1.0, 1e-30, 1e30, float("nan"), float("inf"), 180.0, 360.0)
MTZ_RECORDS = (b"NCOL", b"CELL", b"SYMINF", b"COLUMN", b"NDIF", b"DCELL", b"RESO", b"VALM", b"SYMM")


@dataclass
class Outcome:
    path: str
    status: str  # result | refused | traceback | signal | hang
    message: str = ""


def mutate_ccp4(data: bytes, rng: np.random.Generator) -> bytes:
    b = bytearray(data)
    kind = rng.integers(3)
    if kind == 0:    # a header word set to a hostile value
        word = int(rng.integers(0, 56))
        if 10 <= word < 16 or word in (19, 20, 21, 54) or rng.random() < 0.2:
            b[4 * word:4 * word + 4] = struct.pack("<f", float(rng.choice(HOSTILE_FLOATS)))
        else:
            b[4 * word:4 * word + 4] = struct.pack("<i", int(rng.choice(HOSTILE_INTS)))
    elif kind == 1:  # truncation
        b = b[:int(rng.integers(0, len(b)))]
    else:            # random bytes, mostly in the header
        for _ in range(int(rng.integers(1, 9))):
            pos = int(rng.integers(0, 1024 if rng.random() < 0.7 else len(b)))
            b[pos] = int(rng.integers(0, 256))
    return bytes(b)


def mutate_mtz(data: bytes, rng: np.random.Generator) -> bytes:
    b = bytearray(data)
    header_at = 4 * (struct.unpack("<i", bytes(b[4:8]))[0] - 1)
    kind = rng.integers(4)
    if kind == 0:    # a number in a header record replaced by a hostile one
        record = MTZ_RECORDS[int(rng.integers(len(MTZ_RECORDS)))]
        starts = [i for i in range(header_at, len(b) - 80, 80) if b[i:i + len(record)] == record]
        if starts:
            start = starts[int(rng.integers(len(starts)))]
            fields = bytes(b[start:start + 80]).split()
            i = int(rng.integers(1, max(2, len(fields))))
            hostile = [b"0", b"-1", b"nan", b"inf", b"1e30", b"99999999999", b"X", b"\xff\xfe"][int(rng.integers(8))]
            fields[min(i, len(fields) - 1)] = hostile
            b[start:start + 80] = b" ".join(fields)[:80].ljust(80)
    elif kind == 1:  # truncation
        b = b[:int(rng.integers(0, len(b)))]
    elif kind == 2:  # random bytes in the header records or the first words
        for _ in range(int(rng.integers(1, 9))):
            region = (header_at, len(b)) if rng.random() < 0.7 else (0, 80)
            b[int(rng.integers(*region))] = int(rng.integers(0, 256))
    else:            # data values set to NaN, infinity or huge numbers
        for _ in range(int(rng.integers(1, 30))):
            pos = 80 + 4 * int(rng.integers(0, max(1, (header_at - 80) // 4)))
            b[pos:pos + 4] = struct.pack("<f", float(rng.choice(HOSTILE_FLOATS)))
    return bytes(b)


def make_corpus(folder: Path, per_fixture: int = PER_FIXTURE, seed: int = SEED) -> list[Path]:
    """Write ``per_fixture`` mutants of each fixture into ``folder``; the same files for the same seed."""
    rng = np.random.default_rng(seed)
    paths = []
    for name in FIXTURES:
        original = (DATA / name).read_bytes()
        mutate = mutate_ccp4 if name.endswith(".ccp4") else mutate_mtz
        stem, suffix = name.rsplit(".", 1)
        for i in range(per_fixture):
            path = folder / f"{stem}_{i:03d}.{suffix}"
            path.write_bytes(mutate(original, rng))
            paths.append(path)
    return paths


def run_corpus(paths: list[Path], timeout: float = 60.0, batch: int = BATCH,
               python: tuple[str, ...] = (sys.executable,), env: dict | None = None) -> list[Outcome]:
    """Read every file in child processes; a child killed by a signal is blamed on the file it announced."""
    env = dict(env or os.environ, OMP_NUM_THREADS="1")
    outcomes: list[Outcome] = []
    todo = [str(p) for p in paths]
    while todo:
        chunk, todo = todo[:batch], todo[batch:]
        try:
            proc = subprocess.run([*python, "-c", WORKER], input="\n".join(chunk) + "\n",
                                  capture_output=True, text=True, env=env, timeout=timeout,
                                  cwd=str(Path(chunk[0]).parent))
            stdout, failure = proc.stdout, (f"exit {proc.returncode}: {proc.stderr[-300:]}"
                                            if proc.returncode else "")
        except subprocess.TimeoutExpired as exc:
            stdout = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
            failure = f"no answer in {timeout:g} s"
        started, done = [], {}
        for line in stdout.splitlines():
            if line.startswith("START "):
                started.append(line[6:])
            elif line.startswith("END "):
                out = json.loads(line[4:])
                done[out["path"]] = Outcome(out["path"], out["status"], out.get("message", ""))
        outcomes += [done[p] for p in chunk if p in done]
        if failure:
            culprit = started[-1] if started and started[-1] not in done else chunk[len(done)]
            kind = "hang" if failure.startswith("no answer") else "signal"
            outcomes.append(Outcome(culprit, kind, failure))
            todo = [p for p in chunk if p not in done and p != culprit] + todo
    return outcomes


def test_fuzzed_maps_and_mtz_end_in_a_result_or_a_clean_refusal(tmp_path):
    paths = make_corpus(tmp_path)
    assert len(paths) >= 200
    outcomes = run_corpus(paths)
    assert len(outcomes) == len(paths)
    bad = [o for o in outcomes if o.status not in ("result", "refused")]
    assert not bad, "\n".join(f"{o.status}: {Path(o.path).name}: {o.message}" for o in bad[:5])
    refusals = [o for o in outcomes if o.status == "refused"]
    # a refusal is one sentence, not a dump
    assert all(o.message and "\n" not in o.message and len(o.message) < 400 for o in refusals)
    # the corpus is hostile enough to be refused often, and mild enough to be read sometimes
    assert len(refusals) > len(paths) // 4
    assert any(o.status == "result" for o in outcomes)


def test_the_grid_sampling_zero_map_is_refused_not_a_signal(tmp_path):
    data = bytearray((DATA / "gui_tiny.ccp4").read_bytes())
    data[28:32] = struct.pack("<i", 0)  # MX, header word 8
    path = tmp_path / "mx0.ccp4"
    path.write_bytes(bytes(data))
    (outcome,) = run_corpus([path])
    assert outcome.status == "refused"
    assert "grid sampling" in outcome.message and "MX, MY, MZ = 0" in outcome.message
