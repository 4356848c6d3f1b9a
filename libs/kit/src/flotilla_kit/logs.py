"""JSON log lines with Elastic Common Schema field names, one per event, on stdout.

Elastic's own `ecs-logging` formatter renders each line, so Filebeat/Logstash ship them to
Elasticsearch as they are. Every line carries the service, the instance, and, inside a
request, `http.request.id` and `trace.id`. Standard-library loggers (uvicorn, SQLAlchemy,
Alembic) are routed through the same renderer.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO, cast

import ecs_logging
import structlog
from structlog.types import EventDict, Processor, WrappedLogger

from flotilla_kit.context import current_context

__all__ = ["configure_logging", "get_logger"]

# ecs-logging types its event dict as `dict`, structlog as `MutableMapping`; it only reads it.
_ECS_RENDERER = cast(Processor, ecs_logging.StructlogFormatter())


def _add_request_context(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    ctx = current_context()
    if ctx is not None:
        event_dict.setdefault("http.request.id", ctx.request_id)
        event_dict.setdefault("trace.id", ctx.trace_id)
        event_dict.setdefault("span.id", ctx.span_id)
    return event_dict


def _service_fields(service: str, instance: str) -> Processor:
    def add(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
        event_dict.setdefault("service.name", service)
        event_dict.setdefault("service.node.name", f"{service}-{instance}")
        return event_dict

    return add


# ECS fields that are objects: a plain value logged under their name would make
# Elasticsearch refuse the line, so it moves to the object's field for it.
_ECS_OBJECTS = {"error": "error.message", "url": "url.full"}


def _ecs_objects(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    for name, field in _ECS_OBJECTS.items():
        value = event_dict.get(name)
        if value is not None and not isinstance(value, dict):
            event_dict.setdefault(field, str(event_dict.pop(name)))
    return event_dict


def _drop_stdlib_noise(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    # ProcessorFormatter adds these; ECS already has log.logger and @timestamp.
    event_dict.pop("_record", None)
    event_dict.pop("_from_structlog", None)
    record_name = event_dict.pop("logger", None)
    if record_name:
        event_dict.setdefault("log.logger", record_name)
    return event_dict


def configure_logging(
    service: str, instance: str = "0", level: str = "info", stream: TextIO | None = None
) -> None:
    """Configure structlog and the standard library to write ECS JSON lines to `stream`."""
    out = stream or sys.stdout
    numeric_level = logging.getLevelNamesMapping()[level.upper()]
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        _add_request_context,
        _service_fields(service, instance),
        _ecs_objects,
        structlog.processors.format_exc_info,
    ]
    structlog.configure(
        processors=[*shared, _ECS_RENDERER],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=structlog.WriteLoggerFactory(file=out),
        cache_logger_on_first_use=True,
    )

    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            _drop_stdlib_noise,
            _ECS_RENDERER,
        ],
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric_level)
    # Uvicorn's access log repeats what our middleware already logs, with less context.
    logging.getLogger("uvicorn.access").disabled = True
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # httpx logs every request it sends at INFO: the kit's own background calls (keys,
    # revocations every few seconds) would fill the log of an idle instance. Their
    # failures are logged by the callers, and outgoing requests are traced.
    logging.getLogger("httpx").setLevel(max(numeric_level, logging.WARNING))


def get_logger(name: str, **initial: Any) -> structlog.typing.FilteringBoundLogger:
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger(name, **initial)
    return logger
