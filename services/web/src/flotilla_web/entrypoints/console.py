"""The operator console: support reads (`system:read`), admin acts (`system:operate`:
requeue a dead letter, scale a service). A customer gets the 403 page on every URL here.

    GET  /console                               the system picture (live: system.json)
    GET  /console/system.json                   the same, for console.js every 2 s
    GET  /console/traces[?trace_id=]            the form, the newest requests
    GET  /console/traces/{trace_id}             a trace as a waterfall (SVG)
    GET  /console/pending                       in-doubt transfers, PENDING orders
    GET  /console/dead-letters                  the dead-letter queue
    POST /console/dead-letters/{seq}/requeue    admin, CSRF
    GET  /console/audit                         each audit log's chain and newest records
    GET  /console/scaling                       instance counts, scale requests
    GET  /console/scaling.json                  the same, for console.js
    POST /console/scale                         admin, CSRF

The permission is checked here on every request (the navigation hiding a link is not a
check); a POST's CSRF token is checked before anything else runs (`CheckedForm`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from flotilla_web.domain import InvalidForm, NotFound
from flotilla_web.entrypoints.errors import error_page
from flotilla_web.entrypoints.rendering import render
from flotilla_web.entrypoints.sessions import CheckedForm, CurrentSession, WebSession, field
from flotilla_web.service_layer import console
from flotilla_web.service_layer.console_ports import (
    ConsoleSources,
    DeadLetterGone,
    DeadLetterRefused,
    SourceUnavailable,
)

__all__ = ["OPERATE", "READ", "router"]

READ = "system:read"
OPERATE = "system:operate"
_NO_STORE = {"Cache-Control": "no-store"}

router = APIRouter()


async def _sources(request: Request) -> ConsoleSources:
    sources: ConsoleSources = request.app.state.console
    return sources


Sources = Annotated[ConsoleSources, Depends(_sources)]


def _page(
    request: Request,
    web: WebSession,
    template: str,
    title: str,
    context: dict[str, Any],
    *,
    status: int = 200,
) -> HTMLResponse:
    return render(
        request,
        f"console/{template}",
        {"title": title, "can_operate": web.can(OPERATE), **context},
        session=web,
        status=status,
    )


def _unavailable(request: Request, web: WebSession, reason: str) -> Response:
    return error_page(request, 503, "Not available here", reason, slug="unavailable", session=web)


# -- the system picture ----------------------------------------------------------------
@router.get("/console", include_in_schema=False)
async def system(request: Request, web: CurrentSession, sources: Sources) -> HTMLResponse:
    web.require(READ)
    picture = await console.system_picture(web.api, sources.history)
    return _page(request, web, "system.html", "System", {"picture": picture})


@router.get("/console/system.json", include_in_schema=False)
async def system_json(web: CurrentSession, sources: Sources) -> JSONResponse:
    web.require(READ)
    picture = await console.system_picture(web.api, sources.history)
    return JSONResponse(picture.to_json(), headers=_NO_STORE)


# -- traces ----------------------------------------------------------------------------
@router.get("/console/traces", include_in_schema=False)
async def traces(
    request: Request,
    web: CurrentSession,
    sources: Sources,
    trace_id: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    web.require(READ)
    errors: dict[str, str] = {}
    if trace_id is not None:
        try:
            found = console.checked_trace_id(trace_id)
        except console.MalformedTraceId as bad:
            errors["trace_id"] = str(bad)
        else:
            return RedirectResponse(f"/console/traces/{found}", status_code=303)
    recent = await console.recent_requests(sources.spans)
    return _page(
        request,
        web,
        "traces.html",
        "Traces",
        {"recent": recent, "errors": errors, "value": trace_id or ""},
        status=400 if errors else 200,
    )


@router.get("/console/traces/{trace_id}", include_in_schema=False)
async def trace(request: Request, trace_id: str, web: CurrentSession, sources: Sources) -> Response:
    web.require(READ)
    try:
        checked = console.checked_trace_id(trace_id)
    except console.MalformedTraceId as bad:
        return error_page(
            request, 400, "Bad request: not a trace id", str(bad), slug="bad-request", session=web
        )
    try:
        page = await console.trace_page(sources.spans, checked)
    except SourceUnavailable as down:
        return _unavailable(request, web, str(down))
    except NotFound:
        return error_page(
            request,
            404,
            "Trace not found",
            f"No span of trace {checked} is in the span files: an unknown id, a trace that "
            "was not sampled, or spans not written yet (they are, within a second or so).",
            slug="not-found",
            session=web,
        )
    return _page(request, web, "trace.html", f"Trace {checked[:8]}", {"trace": page})


# -- pending work ----------------------------------------------------------------------
@router.get("/console/pending", include_in_schema=False)
async def pending(request: Request, web: CurrentSession) -> HTMLResponse:
    web.require(READ)
    work = await console.pending_work(web.api)
    context = {"work": work, "in_doubt_after_s": console.IN_DOUBT_AFTER_S}
    return _page(request, web, "pending.html", "Pending", context)


# -- dead letters ----------------------------------------------------------------------
@router.get("/console/dead-letters", include_in_schema=False)
async def dead_letters(
    request: Request,
    web: CurrentSession,
    sources: Sources,
    requeued: Annotated[str | None, Query(max_length=20)] = None,
) -> HTMLResponse:
    web.require(READ)
    found = await console.dead_letters(sources.dead_letters)
    done = int(requeued) if requeued and requeued.isascii() and requeued.isdigit() else None
    return _page(
        request,
        web,
        "dead_letters.html",
        "Dead letters",
        {"dead": found, "requeued": done, "limit": console.DEAD_LETTER_LIMIT},
    )


@router.post("/console/dead-letters/{sequence}/requeue", include_in_schema=False)
async def requeue(
    request: Request, sequence: str, web: CurrentSession, form: CheckedForm, sources: Sources
) -> Response:
    web.require(OPERATE)
    try:
        done = await console.requeue_dead_letter(sources.dead_letters, sequence)
    except DeadLetterGone:
        return error_page(
            request,
            404,
            "Dead letter not found",
            f"No dead letter #{sequence} is in the queue: it was requeued already, or "
            "never was. Nothing was done.",
            slug="not-found",
            session=web,
        )
    except DeadLetterRefused as refused:
        return error_page(
            request,
            409,
            "Dead letter kept",
            f"Dead letter #{sequence} cannot be requeued: {refused}. It stays in the queue.",
            slug="conflict",
            session=web,
        )
    except SourceUnavailable as down:
        return _unavailable(request, web, str(down))
    return RedirectResponse(f"/console/dead-letters?requeued={done.sequence}", status_code=303)


# -- audit -----------------------------------------------------------------------------
@router.get("/console/audit", include_in_schema=False)
async def audit(request: Request, web: CurrentSession, sources: Sources) -> HTMLResponse:
    web.require(READ)
    picture = await console.system_picture(web.api, sources.history)
    view = await console.audit_logs(web.api, shards=picture.shard_count())
    return _page(request, web, "audit.html", "Audit", {"audit": view})


# -- scaling ---------------------------------------------------------------------------
def _scaling_json(view: console.ScalingView) -> dict[str, Any]:
    return {
        "available": view.available,
        "reason": view.reason,
        "picture_reason": view.picture.reason,
        "stale": view.stale,
        "groups": [
            {"group": g.group, "instances": g.instances, "ready": g.ready}
            for g in view.picture.group_counts()
        ],
        "pending": [
            {
                "id": p.id,
                "service": p.service,
                "shard": p.shard,
                "instances": p.instances,
                "age_s": round(p.age_s, 1),
            }
            for p in view.pending
        ],
        "answered": [
            {
                "id": a.id,
                "ok": a.ok,
                "detail": a.detail,
                "answered_at": a.answered_at.isoformat(),
                "answered_text": a.answered_at.strftime("%Y-%m-%d %H:%M:%S UTC"),
            }
            for a in view.answered
        ],
    }


def _scaling_page(
    request: Request,
    web: WebSession,
    view: console.ScalingView,
    *,
    asked: str | None = None,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> HTMLResponse:
    # Only an id the folder holds is shown (never text from the address).
    known = {p.id for p in view.pending} | {a.id for a in view.answered}
    return _page(
        request,
        web,
        "scaling.html",
        "Scaling",
        {
            "scaling": view,
            "asked": asked if asked in known else None,
            "values": values or {},
            "errors": errors or {},
            "max_instances": console.MAX_SCALE_INSTANCES,
            "stale_after": int(console.STALE_REQUEST_S),
        },
        status=status,
    )


@router.get("/console/scaling", include_in_schema=False)
async def scaling(
    request: Request,
    web: CurrentSession,
    sources: Sources,
    asked: Annotated[str | None, Query(alias="request", max_length=64)] = None,
) -> HTMLResponse:
    web.require(READ)
    view = await console.scaling_view(web.api, sources)
    return _scaling_page(request, web, view, asked=asked)


@router.get("/console/scaling.json", include_in_schema=False)
async def scaling_json(web: CurrentSession, sources: Sources) -> JSONResponse:
    web.require(READ)
    view = await console.scaling_view(web.api, sources)
    return JSONResponse(_scaling_json(view), headers=_NO_STORE)


@router.post("/console/scale", include_in_schema=False)
async def scale(
    request: Request, web: CurrentSession, form: CheckedForm, sources: Sources
) -> Response:
    web.require(OPERATE)
    values = {"service": field(form, "service"), "instances": field(form, "instances")}
    try:
        service, instances = console.scale_form(values["service"], values["instances"])
    except InvalidForm as invalid:
        view = await console.scaling_view(web.api, sources)
        return _scaling_page(request, web, view, values=values, errors=invalid.errors, status=400)
    try:
        asked = await console.request_scale(sources.scaling, service, instances)
    except SourceUnavailable as down:
        return _unavailable(request, web, str(down))
    return RedirectResponse(f"/console/scaling?request={asked}", status_code=303)
