"""The security headers of every answer: the contract's Content-Security-Policy (no
inline script or style anywhere: scripts and styles come from /static only), no MIME
sniffing, no framing, no referrer to other sites. The gateway sets the same CSP; setting
it here too keeps the pages safe when the service is reached another way."""

from __future__ import annotations

import ipaddress

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from flotilla_web.adapters.gateway import client_address

__all__ = ["CONTENT_SECURITY_POLICY", "SECURITY_HEADERS", "ClientAddress", "SecurityHeaders"]

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)

SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
)


class SecurityHeaders:
    """ASGI middleware adding SECURITY_HEADERS to each answer that lacks them."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                present = {name.lower() for name, _ in headers}
                headers.extend(h for h in SECURITY_HEADERS if h[0] not in present)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, sending)


def _forwarded_for(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"x-forwarded-for":
            last = value.decode("latin-1").rsplit(",", 1)[-1].strip()
            try:
                return str(ipaddress.ip_address(last))
            except ValueError:
                return None
    return None


class ClientAddress:
    """ASGI middleware: the browser's address, from the X-Forwarded-For the gateway sets
    (only the gateway reaches this service: mutual TLS), for the calls made for it
    (`adapters.gateway.client_address`)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        token = client_address.set(_forwarded_for(scope))
        try:
            await self.app(scope, receive, send)
        finally:
            client_address.reset(token)
