"""The client-credentials use case against fakes: roles, single use, audit."""

from __future__ import annotations

import json

import pytest

from flotilla_auth.service_layer.errors import InvalidClient
from flotilla_auth.service_layer.service_tokens import (
    CLIENT_ASSERTION_TYPE,
    ServiceTokenGrant,
    grant_client_credentials,
)

from .fakes import POLICY, T0, FakeAssertionVerifier, FakeSigner, FakeStore, FakeUowFactory


async def grant(
    store: FakeStore,
    assertion: str | None,
    *,
    assertion_type: str | None = CLIENT_ASSERTION_TYPE,
    client_id: str | None = None,
) -> ServiceTokenGrant:
    return await grant_client_credentials(
        uow=FakeUowFactory(store),
        assertions=FakeAssertionVerifier(),
        signer=FakeSigner(),
        policy=POLICY,
        now=T0,
        assertion_type=assertion_type,
        assertion=assertion,
        client_id=client_id,
    )


async def test_a_known_service_gets_its_role_and_no_session() -> None:
    store = FakeStore()

    issued = await grant(store, "orders:jti-1:60", client_id="orders")

    claims = json.loads(issued.access_token)
    assert claims["sub"] == "service:orders"
    assert claims["roles"] == ["service:orders"]
    assert "sid" not in claims
    assert not hasattr(issued, "refresh_token")
    assert list(store.assertions) == [("orders", "jti-1")]
    assert store.actions() == ["client_credentials.issued"]


@pytest.mark.parametrize(
    ("assertion", "kwargs", "reason"),
    [
        ("gateway:jti-1:60", {}, "not a service"),
        ("forged:jti-1:60", {}, "bad signature"),
        ("orders:jti-1:60", {"client_id": "payments"}, "client_id"),
        ("orders:jti-1:60", {"assertion_type": "urn:other"}, "client_assertion_type"),
        (None, {}, "client_assertion missing"),
    ],
)
async def test_refusals_are_invalid_client_and_audited_alone(
    assertion: str | None, kwargs: dict[str, str], reason: str
) -> None:
    store = FakeStore()

    with pytest.raises(InvalidClient) as refused:
        await grant(store, assertion, **kwargs)

    assert reason in refused.value.reason
    assert str(refused.value) == "Client authentication failed."
    assert store.assertions == {}
    [event] = store.audit
    assert (event.action, event.outcome) == ("client_credentials.refused", "failure")


async def test_an_assertion_is_accepted_once() -> None:
    store = FakeStore()
    await grant(store, "payments:jti-9:60")

    with pytest.raises(InvalidClient) as replay:
        await grant(store, "payments:jti-9:60")

    assert "replayed" in replay.value.reason
    assert store.actions() == ["client_credentials.issued", "client_credentials.refused"]
