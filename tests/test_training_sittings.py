"""A run that spans sittings keeps one metrics.csv counted on across them and a weights-only checkpoint."""
from __future__ import annotations

import csv
import json

import pytest

torch = pytest.importorskip("torch")

from crysplugins.training.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from crysplugins.training.sittings import main  # noqa: E402

FIELDS = ["epoch", "step", "minutes", "examples", "test_pearson"]


def _run(folder, rows, weight, optimizer=None):
    folder.mkdir()
    with open(folder / "metrics.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=FIELDS)
        w.writeheader()
        w.writerows(dict(zip(FIELDS, r)) for r in rows)
    save_checkpoint(folder / "checkpoint.pt", {"w": torch.full((2,), weight)},
                    {"state": {"examples": int(rows[-1][3]), "step": int(rows[-1][1])}, "task": "reccrysformer"},
                    optimizer=optimizer)
    (folder / "config.json").write_text(json.dumps({"sitting": weight}))


def test_a_second_sitting_counts_on_and_keeps_weights_only(tmp_path, capsys):
    committed, second = tmp_path / "committed", tmp_path / "second"
    _run(committed, [(1, 100, 10.0, 800, 0.40), (3, 300, 30.0, 2400, 0.44)], 1.0)
    _run(second, [(1, 100, 11.0, 800, 0.43), (2, 200, 22.0, 1600, 0.47)], 2.0, optimizer={"state": {}})
    assert main([str(second), str(committed)]) == 0
    with open(committed / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["examples"]) for r in rows] == [800, 2400, 3200, 4000]
    assert [float(r["minutes"]) for r in rows] == [10.0, 30.0, 41.0, 52.0]
    ckpt = load_checkpoint(committed)
    assert ckpt.optimizer is None and float(ckpt.model["w"][0]) == 2.0
    assert ckpt.meta["state"]["examples"] == 4000
    summary = json.loads((committed / "summary.json").read_text())
    assert [s["examples"] for s in summary["sittings"]] == [2400, 1600]
    assert json.loads((committed / "config.json").read_text()) == {"sitting": 2.0}
    assert "2 sittings, 4000 examples" in capsys.readouterr().out


def test_a_folder_without_metrics_is_refused_in_one_sentence(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty"), str(tmp_path / "empty")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: There is no metrics.csv") and err.count("\n") == 1
