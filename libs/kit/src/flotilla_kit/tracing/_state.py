"""The process's one `Tracing`, and the tracer to make spans with.

Every part of the package reads the installed `Tracing` from here; this module imports
only OpenTelemetry's API, so the parts that need nothing more (database, events) stay cheap
to import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from opentelemetry import trace

if TYPE_CHECKING:
    from flotilla_kit.tracing._setup import Tracing

__all__ = ["installed", "tracer", "tracing"]


class _Installed:
    """The process's one `Tracing` (None until `install_tracing`)."""

    tracing: Tracing | None = None


installed = _Installed()
_noop = trace.NoOpTracer()


def tracing() -> Tracing | None:
    return installed.tracing


def tracer() -> trace.Tracer:
    active = installed.tracing
    return active.tracer if active is not None else _noop
