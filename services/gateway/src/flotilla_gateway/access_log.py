"""One access log line per request, with ECS field names, through the kit's logger.

Fields are passed already nested (`http={"request": {...}}`) rather than dotted
(`"http.request.method"`): the ECS renderer nests dotted keys itself, field by field,
and that costs more than the rest of a proxied request. The JSON line is the same.
`event.duration` stays dotted because `event` is structlog's message key.
"""

from __future__ import annotations

from typing import Any

from flotilla_kit.logs import get_logger

__all__ = ["AccessLog"]


class AccessLog:
    def __init__(self) -> None:
        self._log: Any = get_logger("flotilla.access")
        self._bound = False

    def record(
        self,
        *,
        method: bytes,
        path: str,
        status: int,
        duration_ns: int,
        request_id: str,
        trace_id: str | None,
        instance: str | None,
        user_id: str | None,
        client_ip: str,
    ) -> None:
        if not self._bound:
            # Resolve the lazy proxy once (logging is configured by now) instead of on
            # every line.
            self._log = self._log.bind()
            self._bound = True
        self._log.info(
            "request",
            http={
                "request": {"method": method.decode("latin-1"), "id": request_id},
                "response": {"status_code": status},
            },
            url={"path": path},
            trace={"id": trace_id},
            upstream={"instance": instance},
            user={"id": user_id},
            client={"ip": client_ip},
            **{"event.duration": duration_ns},
        )
