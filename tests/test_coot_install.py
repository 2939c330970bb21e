"""``crysplugins coot-install``: the script lands in Coot's start-up folders with the command baked in."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from crysplugins.cli import main
from crysplugins.coot_install import COMMAND_LINE, SCRIPT_NAME, default_coot_dirs, find_command


import crysplugins_tests_coot_helpers as helpers  # registered by conftest.py
fake = helpers.fake_coot()


def test_default_folders_are_coot1_and_coot09(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    assert default_coot_dirs() == [tmp_path / ".config" / "Coot", tmp_path / ".coot-preferences"]


def test_command_is_this_environments_crysplugins():
    command = find_command()
    assert os.path.isabs(command[0]) and os.access(command[0], os.X_OK)
    if len(command) == 1:
        assert Path(command[0]).name.startswith("crysplugins")


def test_install_dry_run_and_uninstall(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    assert main(["coot-install", "--dry-run"]) == 0
    assert "would write" in capsys.readouterr().out
    assert not (tmp_path / ".config").exists() and not (tmp_path / ".coot-preferences").exists()

    assert main(["coot-install"]) == 0
    written = [d / SCRIPT_NAME for d in default_coot_dirs()]
    for path in written:
        text = path.read_text()
        assert COMMAND_LINE not in text
        assert f"CRYSPLUGINS_COMMAND = {find_command()!r}".replace("'", '"') in text
        compile(text, str(path), "exec")  # still a valid script
        assert not list(path.parent.glob(".*.part"))  # atomic write left no temporary file

    assert main(["coot-install", "--uninstall", "--dry-run"]) == 0
    assert all(p.exists() for p in written)
    assert main(["coot-install", "--uninstall"]) == 0
    assert not any(p.exists() for p in written)


def test_foreign_file_is_never_overwritten_or_removed(tmp_path, capsys):
    target = tmp_path / "coot"
    target.mkdir()
    mine = target / SCRIPT_NAME
    mine.write_text("print('my own script')\n")
    assert main(["coot-install", "--coot-dir", str(target)]) == 2
    assert "was not written by crysplugins coot-install" in capsys.readouterr().err
    assert main(["coot-install", "--uninstall", "--coot-dir", str(target)]) == 0
    assert mine.read_text() == "print('my own script')\n"


def test_installed_script_runs_the_baked_command(monkeypatch, tmp_path):
    """The copy in a Coot folder finds crysplugins through the baked path alone (no PATH, no env)."""
    target = tmp_path / "Coot"
    assert main(["coot-install", "--coot-dir", str(target)]) == 0
    helpers.setup_env(monkeypatch, tmp_path)
    monkeypatch.delenv("CRYSPLUGINS_COMMAND")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    rec = fake.Recorder()
    coot = fake.FakeCoot(rec)
    fake.install_modules(monkeypatch, "1", coot, rec)
    app = helpers.run_script(target / SCRIPT_NAME)["crysplugins_coot"]
    assert app.command == find_command()
    rec.run_timers()
    assert "coot-test-normalise" in app.menu_names, rec.dialogs


def test_custom_command(tmp_path):
    target = tmp_path / "prefs"
    assert main(["coot-install", "--coot-dir", str(target), "--command", "'/opt/my env/bin/python' -m crysplugins.cli"]) == 0
    assert 'CRYSPLUGINS_COMMAND = ["/opt/my env/bin/python", "-m", "crysplugins.cli"]' in (target / SCRIPT_NAME).read_text()


@pytest.mark.skipif(os.name == "nt" or os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_folder_is_one_sentence(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        assert main(["coot-install", "--coot-dir", str(locked)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: Could not write") and len(err.splitlines()) == 1
    finally:
        locked.chmod(0o700)
