"""The API docs at /docs: Swagger UI served by the gateway itself (no CDN), rendering
every operation of /openapi.json under the gateway's strict Content-Security-Policy."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.harness import Api, Visitor

pytestmark = pytest.mark.e2e

_METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


def test_the_api_docs_render_every_operation_under_the_strict_csp(
    visitor: Visitor, api: Api
) -> None:
    document = api.client.get("/openapi.json").json()
    operations = {
        (method.upper(), path, operation.get("summary", ""))
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in _METHODS
    }
    assert operations, "the merged API has no operation"

    response = visitor.open("/docs")
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "'unsafe-inline'" not in csp
    assert "'unsafe-eval'" not in csp
    assert "default-src 'none'" in csp

    page = visitor.page
    blocks = page.locator(".opblock")
    expect(blocks).to_have_count(len(operations), timeout=20_000)
    rows = page.eval_on_selector_all(
        ".opblock",
        """blocks => blocks.map(b => [
                b.querySelector('.opblock-summary-method').textContent,
                b.querySelector('.opblock-summary-path').dataset.path,
                (b.querySelector('.opblock-summary-description') || {}).textContent || '',
            ])""",
    )
    assert len(rows) == len(operations)
    assert {tuple(row) for row in rows} == operations
    # What a newcomer sees first: an operation of the docs, with its summary, readable.
    _method, path, summary = sorted(operations)[0]
    expect(page.locator(f'.opblock-summary-path[data-path="{path}"]').first).to_be_visible()
    if summary:
        expect(page.get_by_text(summary, exact=True).first).to_be_visible()
    visitor.shoot("docs")
