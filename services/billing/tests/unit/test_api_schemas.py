"""The OpenAPI document's query model says what the list view's DRF serializer checks."""

from __future__ import annotations

from typing import Any

from flotilla_billing.entrypoints.http import ListQuery
from flotilla_billing.entrypoints.schemas import DocumentQuery


def _bounds(schema: dict[str, Any]) -> dict[str, Any]:
    choices = [schema, *schema.get("anyOf", ())]
    keys = ("minimum", "maximum", "minLength", "maxLength")
    return {key: c[key] for c in choices for key in keys if key in c}


def test_the_documented_query_parameters_are_the_validated_ones() -> None:
    fields = ListQuery().fields
    properties = DocumentQuery.model_json_schema()["properties"]
    assert list(fields) == list(properties)
    for name, field in fields.items():
        drf = {
            "minimum": getattr(field, "min_value", None),
            "maximum": getattr(field, "max_value", None),
            "minLength": getattr(field, "min_length", None),
            "maxLength": getattr(field, "max_length", None),
        }
        assert _bounds(properties[name]) == {k: v for k, v in drf.items() if v is not None}, name
        assert field.required is DocumentQuery.model_fields[name].is_required()
        if field.default is not None and not callable(field.default):
            assert DocumentQuery.model_fields[name].default == field.default
