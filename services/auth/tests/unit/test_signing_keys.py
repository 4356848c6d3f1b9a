"""Ensuring one active signing key, and which keys the JWKS publishes."""

from __future__ import annotations

import pytest

from flotilla_auth.domain.signing_keys import KeyStatus, jwk_thumbprint
from flotilla_auth.domain.token_policy import CLOCK_SKEW_S
from flotilla_auth.service_layer.errors import StorageConflict
from flotilla_auth.service_layer.signing_keys import (
    ensure_active_signing_key,
    promote_staged_key,
    published_signing_keys,
    rotate_signing_keys,
    stage_signing_key,
)

from .fakes import SCHEDULE, T0, FakeKeyMaterial, FakeStore, FakeUowFactory, later, retired


async def test_creates_a_key_once_and_then_reuses_it() -> None:
    store = FakeStore()
    keys = FakeKeyMaterial(store)

    first = await ensure_active_signing_key(uow=FakeUowFactory(store), keys=keys, now=T0)
    second = await ensure_active_signing_key(uow=FakeUowFactory(store), keys=keys, now=later(5))

    assert first == second
    assert first.status is KeyStatus.ACTIVE
    assert first.activated_at == T0
    assert keys.generated == 1
    assert list(store.keys) == [first.kid]
    assert store.actions() == ["key.activated"]


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


async def test_publishes_active_staged_and_recently_retired_keys_active_first() -> None:
    store = FakeStore()
    keys = FakeKeyMaterial(store)
    old = retired(keys.generate(now=T0), at=later(10))
    older = retired(keys.generate(now=later(-100)), at=later(-10_000))
    active = keys.generate(now=later(10)).activated(later(10))
    staged = keys.generate(now=later(20))
    store.keys = {k.kid: k for k in (old, older, active, staged)}
    # The configured token lifetime plus skew: every token the key signed has expired.
    grace = SCHEDULE.access_token_ttl_s + CLOCK_SKEW_S

    just_before = await published_signing_keys(
        uow=FakeUowFactory(store), now=later(10 + grace - 1), schedule=SCHEDULE
    )
    after = await published_signing_keys(
        uow=FakeUowFactory(store), now=later(10 + grace), schedule=SCHEDULE
    )

    assert [k.kid for k in just_before] == [active.kid, staged.kid, old.kid]
    assert [k.kid for k in after] == [active.kid, staged.kid]


async def test_staging_publishes_a_key_that_does_not_sign_until_due() -> None:
    store = FakeStore()
    keys = FakeKeyMaterial(store)
    uow = FakeUowFactory(store)
    active = await ensure_active_signing_key(uow=uow, keys=keys, now=T0)

    staged = await stage_signing_key(uow=uow, keys=keys, now=later(100))
    again = await stage_signing_key(uow=uow, keys=keys, now=later(200))

    assert again == staged  # one staged key at a time
    assert staged.status is KeyStatus.NEXT
    assert staged.activates_after(SCHEDULE) == later(100 + SCHEDULE.publish_delay_s)
    published = await published_signing_keys(uow=uow, now=later(200), schedule=SCHEDULE)
    assert [k.kid for k in published] == [active.kid, staged.kid]

    too_early = later(100 + SCHEDULE.publish_delay_s - 1)
    assert await promote_staged_key(uow=uow, now=too_early, schedule=SCHEDULE) is None
    assert store.keys[active.kid].status is KeyStatus.ACTIVE

    due = later(100 + SCHEDULE.publish_delay_s)
    promoted = await promote_staged_key(uow=uow, now=due, schedule=SCHEDULE)

    assert promoted is not None
    assert promoted.kid == staged.kid
    assert store.keys[staged.kid].status is KeyStatus.ACTIVE
    assert store.keys[active.kid].status is KeyStatus.RETIRED
    assert store.keys[active.kid].retired_at == due
    assert store.actions() == ["key.activated", "key.staged", "key.retired", "key.activated"]
    # A second promoter finds nothing staged.
    assert await promote_staged_key(uow=uow, now=due, schedule=SCHEDULE) is None


async def test_the_timer_stages_when_the_active_key_is_old_and_promotes_later() -> None:
    store = FakeStore()
    keys = FakeKeyMaterial(store)
    uow = FakeUowFactory(store)
    first = await ensure_active_signing_key(uow=uow, keys=keys, now=T0)

    young = await rotate_signing_keys(uow=uow, keys=keys, now=later(60), schedule=SCHEDULE)
    assert [k.kid for k in young.published] == [first.kid]

    period = SCHEDULE.rotation_period_s
    staged = await rotate_signing_keys(uow=uow, keys=keys, now=later(period), schedule=SCHEDULE)
    assert staged.active.kid == first.kid
    assert [k.status for k in staged.published] == [KeyStatus.ACTIVE, KeyStatus.NEXT]

    due = period + SCHEDULE.publish_delay_s
    rotated = await rotate_signing_keys(uow=uow, keys=keys, now=later(due), schedule=SCHEDULE)
    assert rotated.active.kid == staged.published[1].kid
    assert [k.status for k in rotated.published] == [KeyStatus.ACTIVE, KeyStatus.RETIRED]

    gone = due + SCHEDULE.access_token_ttl_s + CLOCK_SKEW_S
    later_ring = await rotate_signing_keys(uow=uow, keys=keys, now=later(gone), schedule=SCHEDULE)
    assert [k.kid for k in later_ring.published] == [rotated.active.kid]


async def test_an_emergency_promotion_does_not_wait_for_the_delay() -> None:
    store = FakeStore()
    keys = FakeKeyMaterial(store)
    uow = FakeUowFactory(store)
    await ensure_active_signing_key(uow=uow, keys=keys, now=T0)
    staged = await stage_signing_key(uow=uow, keys=keys, now=later(1))

    promoted = await promote_staged_key(uow=uow, now=later(2), schedule=None)

    assert promoted is not None
    assert promoted.kid == staged.kid


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
