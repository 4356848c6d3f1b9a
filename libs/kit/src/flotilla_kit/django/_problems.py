"""Every error of a Django REST framework app as an RFC 9457 problem.

`exception_handler` is REST framework's `EXCEPTION_HANDLER` (errors inside a DRF view);
`handler400`, `handler403`, `handler404` and `handler500` are the error views of each
app's URLs (errors Django answers itself: an unknown path, a malformed request, a failure
outside a view). A serializer's `ValidationError` is a 422 `validation-error` whose
`errors` have FastAPI's members (`location` from `"body"`, `message`, `code`).

`model_serializer(Model)` makes a DRF serializer that validates with a request model of
the kit (`flotilla_kit.text.ApiModel`): the same rules, messages and codes as the
FastAPI and Flask services. `validated_body(request, Serializer)` reads the body with it
(422 `missing` for no body at all, as FastAPI answers).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import pydantic
from django.core.exceptions import BadRequest, SuspiciousOperation
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from rest_framework import exceptions, serializers
from rest_framework.settings import api_settings

from flotilla_kit.db import TextNotStorable
from flotilla_kit.logs import get_logger
from flotilla_kit.problems import GENERIC_PROBLEMS, PROBLEM_CONTENT_TYPE, Problem, refused_text
from flotilla_kit.text import ApiModel, TextRefused
from flotilla_kit.wsgi import problem_bytes

if TYPE_CHECKING:
    from rest_framework.request import Request

__all__ = [
    "exception_handler",
    "handler400",
    "handler403",
    "handler404",
    "handler500",
    "model_serializer",
    "problem_response",
    "validated_body",
]

_M = TypeVar("_M", bound=ApiModel)
_S = TypeVar("_S", bound=serializers.BaseSerializer[Any])
_problems_log = get_logger("flotilla.problems")
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="flotilla"'}
_INVALID = "One or more fields are missing or invalid."


def problem_response(problem: Problem, path: str) -> HttpResponse:
    response = HttpResponse(
        problem_bytes(problem, path), status=problem.status, content_type=PROBLEM_CONTENT_TYPE
    )
    for name, value in problem.headers.items():
        response[name] = value
    return response


def _generic(status: int, detail: str | None = None, **headers: str) -> Problem:
    slug, title = GENERIC_PROBLEMS.get(status, ("http-error", "HTTP error"))
    return Problem(status, slug, title, detail, headers=headers)


# --- validation errors ---------------------------------------------------------------


def _errors_of(detail: Any, path: tuple[str, ...]) -> Iterator[dict[str, Any]]:
    """A DRF error detail (dicts of lists of `ErrorDetail`, lists per item of a list
    field) as FastAPI's flat list of errors."""
    if isinstance(detail, Mapping):
        for key, value in detail.items():
            inner = path if key == api_settings.NON_FIELD_ERRORS_KEY else (*path, str(key))
            yield from _errors_of(value, inner)
    elif isinstance(detail, list):
        for index, item in enumerate(detail):
            if isinstance(item, Mapping | list):
                yield from _errors_of(item, (*path, str(index)))
            else:
                yield from _errors_of(item, path)
    else:
        code = getattr(detail, "code", None) or "invalid"
        yield {"location": ["body", *path], "message": str(detail), "code": code}


def validation_problem(detail: Any) -> Problem:
    return Problem(
        422, "validation-error", "Request validation failed", _INVALID,
        errors=list(_errors_of(detail, ())),
    )  # fmt: skip


def _detail_of(error: pydantic.ValidationError) -> dict[str, Any]:
    """pydantic's errors as a DRF error detail, nested by location, in pydantic's order."""
    detail: dict[Any, Any] = {}
    for e in error.errors():
        loc = tuple(e["loc"]) or (api_settings.NON_FIELD_ERRORS_KEY,)
        node = detail
        for part in loc[:-1]:
            node = node.setdefault(part, {})
        node.setdefault(loc[-1], []).append(exceptions.ErrorDetail(e["msg"], e["type"]))
    return detail


class ApiModelSerializer(serializers.BaseSerializer[Any]):
    """A DRF serializer whose validation is a kit request model's (`model`);
    `validated_data` is the model instance, `data` its JSON form."""

    model: type[ApiModel] = ApiModel

    def to_internal_value(self, data: Any) -> ApiModel:
        try:
            return self.model.model_validate(data)
        except pydantic.ValidationError as exc:
            raise serializers.ValidationError(_detail_of(exc)) from None

    def to_representation(self, instance: ApiModel) -> dict[str, Any]:
        return instance.model_dump(mode="json")


def model_serializer(model: type[_M]) -> type[ApiModelSerializer]:
    """The DRF serializer of a kit request model (validated as FastAPI would)."""
    return type(f"{model.__name__}Serializer", (ApiModelSerializer,), {"model": model})


def validated_body(request: Request, serializer_class: type[_S], **kwargs: Any) -> _S:
    """The JSON body, validated by `serializer_class` (`is_valid(raise_exception=True)`):
    422 `missing` when there is no body, 400 `malformed-json` when it is not JSON, 422
    `validation-error` naming each field. `kwargs` go to the serializer."""
    # REST framework parses JSON from `body` (kept), so a view may read `request.data` first.
    raw: bytes = request._request.body
    if not raw.strip():
        raise Problem(
            422, "validation-error", "Request validation failed", _INVALID,
            errors=[{"location": ["body"], "message": "Field required", "code": "missing"}],
        )  # fmt: skip
    serializer = serializer_class(data=request.data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return serializer


# --- errors inside a DRF view ------------------------------------------------------------


def _problem_of(exc: Exception) -> Problem | None:  # noqa: PLR0911 - one answer per kind
    if isinstance(exc, Problem):
        return exc
    if isinstance(exc, exceptions.ValidationError):
        return validation_problem(exc.detail)
    if isinstance(exc, exceptions.ParseError):
        return Problem(
            400, "malformed-json", "Malformed JSON", "The request body is not valid JSON."
        )
    if isinstance(exc, TextRefused):
        return refused_text(exc.field.split("."), exc.reason)
    if isinstance(exc, TextNotStorable):
        _problems_log.warning("text the database cannot store reached it")
        return Problem(
            422, "validation-error", "Request validation failed",
            "The request holds a character no field accepts (a NUL or a lone surrogate).",
        )  # fmt: skip
    if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
        return _generic(401, "A bearer access token is required.", **_CHALLENGE)
    if isinstance(exc, Http404):
        return _generic(404)
    if isinstance(exc, DjangoPermissionDenied):
        return _generic(403)
    if isinstance(exc, BadRequest | SuspiciousOperation):
        return _generic(400)
    if isinstance(exc, exceptions.APIException):
        detail = exc.detail if isinstance(exc.detail, str) else None
        return _generic(exc.status_code, detail)
    return None


def exception_handler(exc: Exception, context: dict[str, Any]) -> HttpResponse:
    """REST framework's `EXCEPTION_HANDLER`: every error of a view as a problem; an
    unexpected one is logged with its trace (never sent) and answered 500."""
    request: Request = context["request"]
    problem = _problem_of(exc)
    if problem is None:
        _problems_log.error("unhandled exception", exc_info=exc, path=request.path)
        problem = Problem(500, "internal-error", "Internal server error", "The error was logged.")
    return problem_response(problem, request.path)


# --- errors Django answers itself (each app's URLs name these) ------------------------


def handler400(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return problem_response(_generic(400), request.path)


def handler403(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return problem_response(_generic(403), request.path)


def handler404(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return problem_response(_generic(404), request.path)


def handler500(request: HttpRequest) -> HttpResponse:
    # Called while Django handles the exception: it is the one being handled.
    _problems_log.error("unhandled exception", exc_info=sys.exc_info(), path=request.path)
    problem = Problem(500, "internal-error", "Internal server error", "The error was logged.")
    return problem_response(problem, request.path)
