"""`flotilla demo`: a guided tour of the running system through the gateway, printing every
request and answer."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
from rich.console import Console
from rich.syntax import Syntax

from flotilla_cli.layout import VarLayout
from flotilla_kit.tls import client_context

__all__ = ["run"]


class _Tour:
    def __init__(self, client: httpx.Client, console: Console) -> None:
        self.client = client
        self.console = console
        self.step = 0
        self.surprises: list[str] = []

    def call(
        self,
        title: str,
        method: str,
        path: str,
        expect: int,
        *,
        token: str | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        self.step += 1
        headers = dict(kwargs.pop("headers", {}))
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.console.rule(f"[bold]{self.step}. {title}")
        shown_headers = {
            k: (v[:24] + "…" if k == "Authorization" else v) for k, v in headers.items()
        }
        self.console.print(f"[cyan]{method} {path}[/] {shown_headers or ''}", highlight=False)
        if "json" in kwargs:
            self.console.print(Syntax(json.dumps(kwargs["json"], indent=2), "json"))
        elif "data" in kwargs:
            safe = {k: ("•••" if k == "password" else v) for k, v in kwargs["data"].items()}
            self.console.print(f"form: {safe}", highlight=False)
        response = self.client.request(method, path, headers=headers, **kwargs)
        colour = "green" if response.status_code == expect else "red"
        self.console.print(
            f"[{colour}]-> {response.status_code}[/] {response.headers.get('content-type', '')}"
            f"  x-request-id: {response.headers.get('x-request-id', '-')}",
            highlight=False,
        )
        body: Any = response.json() if response.content else None
        if isinstance(body, dict) and "access_token" in body:
            body = {**body, "access_token": body["access_token"][:32] + "…",
                    "refresh_token": str(body.get("refresh_token", ""))[:8] + "…"}  # fmt: skip
        if body is not None:
            self.console.print(Syntax(json.dumps(body, indent=2), "json"))
        if response.status_code != expect:
            self.surprises.append(
                f"step {self.step}: expected {expect}, got {response.status_code}"
            )
        return response

    def login(self, username: str, password: str) -> str:
        response = self.call(
            f"{username} logs in (OAuth2 password grant)",
            "POST",
            "/api/v1/auth/token",
            200,
            data={"grant_type": "password", "username": username, "password": password},
        )
        token: str = response.json().get("access_token", "")
        return token


def run(gateway_url: str, layout: VarLayout, console: Console) -> bool:
    credentials = json.loads(layout.credentials_file.read_text())
    users = {u["username"]: u for u in credentials["users"]}
    with httpx.Client(
        base_url=gateway_url, verify=client_context(layout.tls / "ca.pem"), timeout=10
    ) as client:
        tour = _Tour(client, console)
        tour.call("Without a token the gateway refuses", "GET", "/api/v1/accounts", 401)
        tour.call(
            "A wrong password is refused",
            "POST",
            "/api/v1/auth/token",
            400,
            data={"grant_type": "password", "username": "alice", "password": "wrong"},
        )
        alice = tour.login("alice", users["alice"]["password"])
        listed = tour.call("alice lists her accounts", "GET", "/api/v1/accounts", 200, token=alice)
        opened = tour.call(
            "alice opens an account (idempotent: safe to retry with the same key)",
            "POST",
            "/api/v1/accounts",
            201,
            token=alice,
            json={"name": "Holiday", "currency": "EUR"},
            headers={"Idempotency-Key": str(uuid.uuid4())},
        )
        account_id = opened.json().get("id", "missing")
        tour.call("...and reads it back", "GET", f"/api/v1/accounts/{account_id}", 200, token=alice)
        tour.call(
            "Bad input gets a problem+json, not a stack trace",
            "POST",
            "/api/v1/accounts",
            422,
            token=alice,
            json={"name": "Yen", "currency": "XYZ"},
        )
        bob = tour.login("bob", users["bob"]["password"])
        first_of_alice = (
            listed.json()["items"][0]["id"] if listed.status_code == 200 else account_id
        )
        tour.call(
            "bob cannot see alice's account (404, not 403: ids cannot be probed)",
            "GET",
            f"/api/v1/accounts/{first_of_alice}",
            404,
            token=bob,
        )
        ada = tour.login("ada", users["ada"]["password"])
        tour.call(
            "ada (admin) deposits 100.00 EUR into alice's new account",
            "POST",
            f"/api/v1/accounts/{account_id}/deposits",
            201,
            token=ada,
            json={"amount_minor": 10_000, "currency": "EUR"},
        )
    console.rule()
    if tour.surprises:
        console.print("[red]Unexpected answers:[/] " + "; ".join(tour.surprises))
        return False
    console.print(f"[green]Every answer was as expected ({tour.step} requests).[/]")
    return True
