"""`flotilla events ...`: watch the event streams, read the dead letters and requeue one."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from flotilla_cli.launcher.layout import VarLayout
from flotilla_cli.ops.event_streams import Seen, follow, nats_url_of, run
from flotilla_cli.options import VarDir
from flotilla_kit.events import (
    BROKER_TROUBLE,
    DeadLetter,
    DeadLetterError,
    Requeued,
    list_dead_letters,
    requeue_dead_letter,
)
from flotilla_kit.logs import configure_logging

__all__ = ["events_app"]

# Room for a dead letter's reason and event id when printing to a file or pipe.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, highlight=False)
events_app = typer.Typer(
    help="Watch the events on NATS JetStream; list, requeue dead letters.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)

NatsUrl = Annotated[
    str | None,
    typer.Option(
        "--nats-url",
        envvar="FLOTILLA_NATS_URL",
        help="NATS server (default: the running system's, from var/run/state.json, else "
        "nats://127.0.0.1:4222).",
    ),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON, one object per line.")]


def _url(var_dir: Path, nats_url: str | None) -> str:
    # The kit's connection logs through structlog: only what an operator should see.
    configure_logging("flotilla-cli", level="warning", stream=sys.stderr)
    return nats_url or nats_url_of(VarLayout.at(var_dir).state_file)


def _unreachable(url: str, exc: BaseException) -> typer.Exit:
    err.print(f"[red]Cannot read the streams at {url}:[/] {str(exc) or repr(exc)}")
    return typer.Exit(1)


@events_app.command("tail")
def tail(
    subject: Annotated[
        str,
        typer.Option(help="Subject filter (`flotilla.orders.>`; `flotilla-dlq.>` for the DLQ)."),
    ] = "flotilla.>",
    from_start: Annotated[
        bool, typer.Option("--from-start", help="Begin with the oldest event kept, not now.")
    ] = False,
    limit: Annotated[
        int | None, typer.Option(min=1, help="Stop after N events (default: follow).")
    ] = None,
    as_json: AsJson = False,
    nats_url: NatsUrl = None,
    var_dir: VarDir = Path("var"),
) -> None:
    """Follow the events as they are published (Ctrl-C stops).

    Follow the events as they are published: time, type, subject, id and a summary of
    the data, one line each (Ctrl-C stops)."""
    url = _url(var_dir, nats_url)

    def ready() -> None:
        err.print(f"[dim]following {subject} on {url}[/]")

    def show(seen: Seen) -> None:
        if as_json:
            sys.stdout.write(seen.payload.decode(errors="replace") + "\n")
        else:  # plain lines: one per event, never wrapped to the terminal's width
            sys.stdout.write(seen.line() + "\n")
        sys.stdout.flush()

    try:
        run(
            follow(
                url,
                subject=subject,
                from_start=from_start,
                limit=limit,
                on_ready=ready,
                on_message=show,
            )
        )
    except BROKER_TROUBLE as exc:
        raise _unreachable(url, exc) from None


@events_app.command("dlq")
def dlq(
    limit: Annotated[int, typer.Option(min=1, help="The newest N dead letters.")] = 1000,
    as_json: AsJson = False,
    nats_url: NatsUrl = None,
    var_dir: VarDir = Path("var"),
) -> None:
    """List the dead letters: events a consumer gave up on.

    List the dead letters (events a consumer gave up on): consumer, reason, original
    subject, deliveries, event id and type, oldest first. Exits 0 (it lists; it does not
    judge)."""
    url = _url(var_dir, nats_url)
    try:
        letters: list[DeadLetter] = run(list_dead_letters(url, limit=limit)) or []
    except BROKER_TROUBLE as exc:
        raise _unreachable(url, exc) from None
    if as_json:
        for letter in letters:
            sys.stdout.write(json.dumps(letter.to_json()) + "\n")
        return
    if not letters:
        console.print("No dead letters.")
        return
    table = Table(title=f"Dead letters ({len(letters)})", title_justify="left")
    for column in ("#", "dead at", "consumer", "reason", "original subject", "tries", "event"):
        table.add_column(column, overflow="fold")
    for letter in letters:
        table.add_row(
            str(letter.sequence),
            letter.dead_at.isoformat(timespec="seconds").replace("+00:00", "Z")
            if letter.dead_at
            else "-",
            letter.consumer,
            letter.reason,
            letter.original_subject,
            str(letter.deliveries),
            f"{letter.event_type or '?'} {letter.event_id or '(unreadable)'}",
        )
    console.print(table)


@events_app.command("requeue")
def requeue(
    sequence: Annotated[
        int,
        typer.Argument(
            min=1,
            help="The dead letter's number (`#` in `flotilla events dlq`).",
            show_default=False,
        ),
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print what was done as JSON.")] = False,
    nats_url: NatsUrl = None,
    var_dir: VarDir = Path("var"),
) -> None:
    """Put a dead letter's event back on its subject.

    Put dead letter SEQUENCE back on its original subject, then remove it from the
    dead-letter queue (a crash between the two leaves the letter, to requeue again). Every
    consumer of that subject gets the event again; those that applied it before ignore it
    (their inbox). Fix what made the consumer give up first. Exit status: 0 requeued; 1 no
    such dead letter, one that cannot be requeued (the message says why), or the broker
    cannot be reached; 2 bad input."""
    url = _url(var_dir, nats_url)
    try:
        done: Requeued | None = run(requeue_dead_letter(url, sequence))
    except DeadLetterError as exc:
        err.print(
            f"[red]Not requeued:[/] {escape(str(exc))} (`flotilla events dlq` lists them).",
            soft_wrap=True,
        )
        raise typer.Exit(1) from None
    except BROKER_TROUBLE as exc:
        raise _unreachable(url, exc) from None
    if done is None:  # interrupted (Ctrl-C)
        raise typer.Exit(1)
    if as_json:
        sys.stdout.write(json.dumps(done.to_json()) + "\n")
        return
    letter = done.letter
    console.print(
        escape(
            f"Requeued dead letter #{letter.sequence} ({letter.event_type} {letter.event_id}, "
            f"given up by {letter.consumer}) onto {done.subject}"
            + (" (already there from an earlier requeue)" if done.duplicate else "")
            + "."
        )
    )
