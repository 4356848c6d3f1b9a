"""`python -m flotilla_orders` and each command's --help, in a real process."""

from __future__ import annotations

import subprocess
import sys

import pytest

COMMANDS = ["serve", "migrate", "relay"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flotilla_orders", *args],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_help_lists_the_commands() -> None:
    done = run("--help")
    assert done.returncode == 0, done.stderr
    for command in COMMANDS:
        assert command in done.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_has_help(command: str) -> None:
    done = run(command, "--help")
    assert done.returncode == 0, done.stderr
    assert "Usage" in done.stdout
    assert command in done.stdout


def test_a_bad_setting_is_named_without_a_traceback() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "flotilla_orders", "migrate"],
        capture_output=True, text=True, timeout=60, check=False,
        env={"FLOTILLA_INVENTORY_TARGETS": '["nowhere"]', "PATH": ""},
    )  # fmt: skip
    assert done.returncode == 2
    assert "FLOTILLA_INVENTORY_TARGETS" in done.stderr
    assert "Traceback" not in done.stderr
