"""Ensuring one active signing key, and which keys the JWKS publishes."""

from __future__ import annotations

import pytest

from flotilla_auth.domain.signing_keys import KeyStatus, jwk_thumbprint
from flotilla_auth.domain.token_policy import CLOCK_SKEW_S, MAX_ACCESS_TOKEN_TTL_S
from flotilla_auth.service_layer.errors import StorageConflict
from flotilla_auth.service_layer.signing_keys import (
    ensure_active_signing_key,
    published_signing_keys,
)

from .fakes import T0, FakeKeyMaterial, FakeStore, FakeUowFactory, later, retired


async def test_creates_a_key_once_and_then_reuses_it() -> None:
    store = FakeStore()
    keys = FakeKeyMaterial(store)

    first = await ensure_active_signing_key(uow=FakeUowFactory(store), keys=keys, now=T0)
    second = await ensure_active_signing_key(uow=FakeUowFactory(store), keys=keys, now=later(5))

    assert first == second
    assert keys.generated == 1
    assert list(store.keys) == [first.kid]


async def test_losing_the_creation_race_adopts_the_winners_key() -> None:
    store = FakeStore()
    keys = FakeKeyMaterial(store, lose_race=True)

    key = await ensure_active_signing_key(uow=FakeUowFactory(store), keys=keys, now=T0)

    assert key.kid == "rival"
    assert [k.kid for k in store.keys.values() if k.status is KeyStatus.ACTIVE] == ["rival"]


async def test_gives_up_when_the_store_keeps_refusing() -> None:
    store = FakeStore(refuse_keys=True)
    keys = FakeKeyMaterial(store)
    with pytest.raises(StorageConflict):
        await ensure_active_signing_key(uow=FakeUowFactory(store), keys=keys, now=T0)
    assert keys.generated == 3
    assert store.keys == {}


async def test_publishes_active_and_recently_retired_keys_active_first() -> None:
    store = FakeStore()
    keys = FakeKeyMaterial(store)
    old = retired(keys.generate(now=T0), at=later(10))
    older = retired(keys.generate(now=later(-100)), at=later(-10_000))
    active = keys.generate(now=later(10))
    store.keys = {k.kid: k for k in (old, older, active)}
    grace = MAX_ACCESS_TOKEN_TTL_S + CLOCK_SKEW_S

    just_before = await published_signing_keys(uow=FakeUowFactory(store), now=later(10 + grace - 1))
    after = await published_signing_keys(uow=FakeUowFactory(store), now=later(10 + grace))

    assert [k.kid for k in just_before] == [active.kid, old.kid]
    assert [k.kid for k in after] == [active.kid]


def test_jwk_thumbprint_matches_rfc_8037() -> None:
    # RFC 8037 appendix A.3.
    jwk = {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
    assert jwk_thumbprint(jwk) == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"


def test_published_jwk_has_the_members_verifiers_need() -> None:
    key = FakeKeyMaterial(FakeStore()).generate(now=T0)
    assert key.jwk() == {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": key.public_jwk["x"],
        "kid": key.kid,
        "alg": "EdDSA",
        "use": "sig",
    }
