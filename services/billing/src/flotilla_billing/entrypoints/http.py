"""The billing REST API on Django REST framework (the kit's chassis, `flotilla_kit.django`).
Authentication, content negotiation and error mapping happen here; decisions in the use
cases.

`GET /api/v1/invoices/{invoice_id}` answers JSON, or the document as a PDF for `Accept:
application/pdf`; an `Accept` neither serves is a 406 problem. What each view takes and
answers is declared with `documented` (models in `schemas`) for `GET /openapi.json`."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.urls import URLPattern, path
from rest_framework import serializers
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from flotilla_billing.adapters.pdf import render_pdf
from flotilla_billing.domain import Document
from flotilla_billing.entrypoints.schemas import DocumentOut, DocumentPage, DocumentQuery
from flotilla_billing.service_layer import use_cases
from flotilla_billing.service_layer.errors import (
    BillingError,
    DocumentNotFound,
    InvalidCursor,
    NotAllowed,
)
from flotilla_billing.service_layer.ports import BillingUnitOfWork, UnitOfWorkFactory
from flotilla_kit.django import current_principal, documented, require_permission, run
from flotilla_kit.problems import Problem, ProblemRule, ProblemTable

__all__ = ["PROBLEMS", "Api", "PdfRenderer", "document_json", "urlpatterns"]

READ = "invoices:read"
PDF = "application/pdf"

PROBLEMS = ProblemTable(
    {
        DocumentNotFound: ProblemRule(
            404, "invoice-not-found", "Invoice not found", "No such invoice or credit note."
        ),
        InvalidCursor: ProblemRule(
            422, "invalid-cursor", "Invalid cursor", "`after` is not the number of a document."
        ),
        NotAllowed: ProblemRule(
            403,
            "forbidden",
            "Forbidden",
            lambda exc: f"This needs the permission {exc.permission}.",
        ),
    }
)


@dataclass(frozen=True, slots=True)
class Api:
    """What the views need: the units of work and who issues the documents."""

    uow: UnitOfWorkFactory[BillingUnitOfWork]
    seller: str


class PdfRenderer(BaseRenderer):
    """Serves `Accept: application/pdf`; the view hands it the PDF's bytes."""

    media_type = PDF
    format = "pdf"
    charset = None
    render_style = "binary"

    def render(
        self,
        data: Any,
        accepted_media_type: str | None = None,
        renderer_context: Mapping[str, Any] | None = None,
    ) -> bytes:
        if not isinstance(data, bytes):  # pragma: no cover - the view passes bytes only
            raise TypeError("a PDF response is rendered by the view")
        return data


def document_json(document: Document) -> dict[str, Any]:
    return {
        "id": str(document.id),
        "kind": document.kind.value,
        "number": document.number,
        "order_id": document.order_id,
        "customer_id": document.customer_id,
        "currency": document.currency,
        "lines": [
            {
                "product_id": line.product_id,
                "quantity": line.quantity,
                "unit_price_minor": line.unit_price_minor,
                "vat_rate_bp": line.vat_rate_bp,
                "net_minor": line.net_minor,
                "vat_minor": line.vat_minor,
                "amount_minor": line.amount_minor,
            }
            for line in document.lines
        ],
        "net_minor": document.net_minor,
        "vat_minor": document.vat_minor,
        "total_minor": document.total_minor,
        "transfer_id": document.transfer_id,
        "credits_id": str(document.credits_id) if document.credits_id else None,
        "credits_number": document.credits_number,
        "issued_at": document.issued_at.isoformat().replace("+00:00", "Z"),
    }


class ListQuery(serializers.Serializer[Any]):
    limit = serializers.IntegerField(min_value=1, max_value=100, default=20)
    after = serializers.CharField(max_length=16, required=False)
    customer_id = serializers.CharField(min_length=1, max_length=128, required=False)


def _query(request: Request) -> dict[str, Any]:
    """The list's query parameters, or 422 naming each (`["query", name]`, as FastAPI)."""
    query = ListQuery(data=request.query_params.dict())
    if query.is_valid():
        return dict(query.validated_data)
    raise Problem(
        422, "validation-error", "Request validation failed",
        "The request does not match the schema; `errors` says where.",
        errors=[
            {"location": ["query", name], "message": str(error), "code": error.code or "invalid"}
            for name, errors in query.errors.items()
            for error in errors
        ],
    )  # fmt: skip


class _BillingView(APIView):
    api: Api | None = None

    @property
    def wired(self) -> Api:
        assert self.api is not None, "built by urlpatterns(api)"
        return self.api


@documented(query=DocumentQuery, response=DocumentPage)
class InvoiceList(_BillingView):
    """The caller's invoices and credit notes, newest first.

    Staff (`invoices:read:any`) may name a customer with `customer_id`."""

    permission_classes = [require_permission(READ)]
    renderer_classes = [JSONRenderer]

    def get(self, request: Request) -> Response:
        params = _query(request)
        try:
            page = run(
                use_cases.list_documents(
                    self.wired.uow,
                    principal=current_principal(request),
                    limit=params["limit"],
                    after=params.get("after"),
                    customer_id=params.get("customer_id"),
                )
            )
        except BillingError as exc:
            raise PROBLEMS.problem_for(exc) from None
        return Response(
            {"items": [document_json(d) for d in page.items], "next_after": page.next_after}
        )


@documented(
    response=DocumentOut,
    alternatives={PDF: "The document as a PDF (`Accept: application/pdf`), served inline."},
)
class InvoiceDetail(_BillingView):
    """One invoice or credit note, as JSON or as a PDF.

    Its customer's, or any for staff (`invoices:read:any`); anyone else's is answered as
    a missing one."""

    permission_classes = [require_permission(READ)]
    renderer_classes = [JSONRenderer, PdfRenderer]

    def get(self, request: Request, invoice_id: str) -> Response:
        try:
            key = uuid.UUID(invoice_id)
        except ValueError:
            # Not an id at all: the same answer as an id nobody has.
            raise PROBLEMS.problem_for(DocumentNotFound(invoice_id)) from None
        try:
            document = run(
                use_cases.get_document(
                    self.wired.uow, principal=current_principal(request), document_id=key
                )
            )
        except BillingError as exc:
            raise PROBLEMS.problem_for(exc) from None
        renderer = request.accepted_renderer
        if isinstance(renderer, PdfRenderer):
            pdf = render_pdf(document, seller=self.wired.seller)
            return Response(
                pdf,
                content_type=PDF,
                headers={"Content-Disposition": f'inline; filename="{document.number}.pdf"'},
            )
        return Response(document_json(document))


def urlpatterns(api: Api) -> list[URLPattern]:
    return [
        path("api/v1/invoices", InvoiceList.as_view(api=api)),
        # `invoice_id`, as the gateway's policy names it (the docs and metrics show it).
        path("api/v1/invoices/<str:invoice_id>", InvoiceDetail.as_view(api=api)),
    ]
