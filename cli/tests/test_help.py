"""`flotilla --help` and every group's help list each command on one line: the first line
of a command's help is a summary that fits the column, the rest is for `COMMAND --help`."""

from __future__ import annotations

import inspect
from collections.abc import Iterator

import typer
from typer.testing import CliRunner

from flotilla_cli.main import app

# 80 columns, less the borders and the command-name column Rich gives them.
SUMMARY_MAX = 63


def _commands(group: typer.Typer, prefix: str = "") -> Iterator[tuple[str, str]]:
    for command in group.registered_commands:
        assert command.callback is not None
        name = command.name or command.callback.__name__.replace("_", "-")
        yield prefix + name, command.help or inspect.getdoc(command.callback) or ""
    for sub in group.registered_groups:
        assert sub.typer_instance is not None
        # A group added without a name (a package's commands) adds its commands as they are.
        yield from _commands(sub.typer_instance, f"{prefix}{sub.name} " if sub.name else prefix)


def _summary_problem(help_text: str) -> str | None:
    first = help_text.split("\n\n", 1)[0]
    if not first.strip():
        return "no help"
    if "\n" in first:
        return "the first paragraph is more than one line"
    if len(first) > SUMMARY_MAX:
        return f"the summary is {len(first)} characters"
    return None


def test_every_command_starts_its_help_with_a_one_line_summary() -> None:
    problems = {name: _summary_problem(text) for name, text in _commands(app)}
    assert len(problems) >= 20
    assert {name: p for name, p in problems.items() if p} == {}


def test_a_hard_wrapped_first_paragraph_is_caught() -> None:
    assert _summary_problem("Start every service, the gateway and the\ndatabase.") is not None
    assert _summary_problem("x" * (SUMMARY_MAX + 1)) is not None
    assert _summary_problem("Show one trace.\n\nThe rest\nwraps freely.") is None


def test_the_top_level_help_lists_each_command_on_one_line() -> None:
    result = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "80", "NO_COLOR": "1"})
    assert result.exit_code == 0
    listed = [line for line in result.output.splitlines() if line.startswith("│ ")]
    # A continuation line starts with spaces where a command's name would be.
    assert [line for line in listed if line[2] == " "] == []


def test_a_commands_own_help_joins_the_docstrings_wrapped_lines() -> None:
    # Wide enough for the whole paragraph: a line break left in it would show.
    result = CliRunner().invoke(app, ["up", "--help"], env={"COLUMNS": "250", "NO_COLOR": "1"})
    assert result.exit_code == 0
    assert "seed demo data; wait until all are ready; show a live status table" in result.output


def test_flotilla_lists_the_commands_of_every_package() -> None:
    # main.py assembles the packages' groups: one left out would drop its commands.
    result = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "120", "NO_COLOR": "1"})
    assert result.exit_code == 0
    listed = {line.split()[1] for line in result.output.splitlines() if line.startswith("│ ")}
    assert listed - {"--help"} == {
        *("up", "down"),  # launcher
        *("status", "demo", "logs", "trace", "audit", "auth", "transfers", "events"),  # ops
        "scale",  # scaling
        "chaos",
        "bench",
        "new",  # scaffold
    }
