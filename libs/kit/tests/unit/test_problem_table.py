"""A service's exception tree mapped to problems by a table: the most specific class wins,
and the answer leaves the app as the same problem+json a hand-written handler gave."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import APIRouter, FastAPI

from flotilla_kit.problems import (
    PROBLEM_CONTENT_TYPE,
    Problem,
    ProblemRule,
    ProblemTable,
    problem_response,
)


class ShopError(Exception):
    pass


class NotFound(ShopError):
    pass


class ProductNotFound(NotFound):
    pass


class Refused(ShopError):
    pass


class OutOfStock(Refused):
    def __init__(self, sku: str, left: int) -> None:
        super().__init__(f"only {left} of {sku!r} left")
        self.sku = sku
        self.left = left


class Busy(ShopError):
    def __init__(self, dependency: str) -> None:
        super().__init__(f"{dependency} is busy")
        self.dependency = dependency


class NotFoundAndRefused(Refused, NotFound):
    """Its MRO: Refused before NotFound."""


TABLE = ProblemTable(
    {
        NotFound: (404, "not-found", "Not found"),
        ProductNotFound: (404, "product-not-found", "Product not found"),
        Refused: (422, "refused", "Refused"),
        OutOfStock: ProblemRule[OutOfStock](
            409,
            "out-of-stock",
            "Out of stock",
            extensions=lambda exc: {"sku": exc.sku, "left": exc.left},
        ),
        Busy: ProblemRule[Busy](
            503,
            lambda exc: f"{exc.dependency}-busy",
            lambda exc: f"{exc.dependency.title()} busy",
            detail=lambda exc: f"Ask {exc.dependency} again later.",
            headers=lambda exc: {"Retry-After": "1", "X-Who": exc.dependency},
        ),
    }
)


def _as_tuple(problem: Problem) -> tuple[object, ...]:
    return (
        problem.status,
        problem.slug,
        problem.title,
        problem.detail,
        problem.headers,
        problem.extensions,
    )


def test_an_error_gets_the_entry_of_its_own_class() -> None:
    problem = TABLE.problem_for(ProductNotFound("no such product"))
    assert _as_tuple(problem) == (
        404, "product-not-found", "Product not found", "no such product", {}, {},
    )  # fmt: skip


def test_a_subclass_without_an_entry_takes_its_nearest_ancestors() -> None:
    class GoneForGood(ProductNotFound):
        pass

    assert TABLE.problem_for(GoneForGood("gone")).slug == "product-not-found"
    assert TABLE.problem_for(NotFound("nothing")).slug == "not-found"


def test_with_two_bases_the_mro_decides() -> None:
    assert TABLE.problem_for(NotFoundAndRefused("both")).slug == "refused"


def test_an_error_the_table_does_not_name_is_a_bad_request_with_its_message() -> None:
    problem = TABLE.problem_for(ShopError("odd"))
    assert _as_tuple(problem) == (400, "bad-request", "Bad request", "odd", {}, {})
    own_default = ProblemTable(
        {}, default=ProblemRule[Exception](500, "internal-error", "Boom", detail="Logged.")
    )
    assert _as_tuple(own_default.problem_for(ShopError("odd"))) == (
        500, "internal-error", "Boom", "Logged.", {}, {},
    )  # fmt: skip


def test_a_rule_computes_each_member_from_the_error() -> None:
    assert _as_tuple(TABLE.problem_for(OutOfStock("tea", 2))) == (
        409, "out-of-stock", "Out of stock", "only 2 of 'tea' left", {}, {"sku": "tea", "left": 2},
    )  # fmt: skip
    assert _as_tuple(TABLE.problem_for(Busy("ledger"))) == (
        503, "ledger-busy", "Ledger busy", "Ask ledger again later.",
        {"Retry-After": "1", "X-Who": "ledger"}, {},
    )  # fmt: skip


def test_problem_response_documents_a_problem_answer() -> None:
    assert problem_response("Gone") == {
        "description": "Gone",
        "content": {PROBLEM_CONTENT_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }


router = APIRouter()


@router.get("/stock/{sku}")
async def stock(sku: str) -> None:
    raise OutOfStock(sku, 0)


@router.get("/busy")
async def busy() -> None:
    raise Busy("ledger")


@router.get("/other")
async def other() -> None:
    raise ValueError("not the shop's")


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    app.include_router(router)
    TABLE.install(app, ShopError)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        yield c


async def test_install_answers_the_trees_errors_as_problem_json(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/stock/tea")
    assert response.status_code == 409
    assert response.headers["content-type"] == PROBLEM_CONTENT_TYPE
    # The same bytes as `Problem.to_response`: members in order, compact JSON.
    assert (
        response.content
        == json.dumps(
            {
                "type": "https://flotilla.dev/problems/out-of-stock",
                "title": "Out of stock",
                "status": 409,
                "detail": "only 0 of 'tea' left",
                "instance": "/stock/tea",
                "sku": "tea",
                "left": 0,
            },
            separators=(",", ":"),
        ).encode()
    )

    busy = await client.get("/busy")
    assert (busy.status_code, busy.headers["retry-after"], busy.headers["x-who"]) == (
        503, "1", "ledger",
    )  # fmt: skip


async def test_install_leaves_other_errors_alone(client: httpx.AsyncClient) -> None:
    assert (await client.get("/other")).status_code == 500
