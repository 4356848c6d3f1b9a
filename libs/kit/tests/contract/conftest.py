"""Fixtures of the contract suite: one service process per framework
(`served.KINDS`), each verifying tokens against keys and revocations the test serves."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from flotilla_kit.testing import REVOKED_SESSION, TokenMinter
from libs.kit.tests.contract.served import KINDS, KeyServer, Service, start_service


@pytest.fixture(scope="session")
def minter() -> TokenMinter:
    return TokenMinter()


@pytest.fixture(scope="session")
def key_server(minter: TokenMinter) -> Iterator[KeyServer]:
    documents = {
        "/jwks": minter.jwks,
        "/revocations": {"sessions": [REVOKED_SESSION]},
    }

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            document = documents.get(self.path)
            body = json.dumps(document).encode()
            self.send_response(200 if document is not None else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield KeyServer(f"http://127.0.0.1:{server.server_address[1]}", server)
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module", params=KINDS)
def service(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, key_server: KeyServer
) -> Iterator[Service]:
    kind: str = request.param
    running = start_service(kind, tmp_path_factory.mktemp(kind), key_server)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def client(service: Service) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=service.url, timeout=10.0) as http:
        yield http
