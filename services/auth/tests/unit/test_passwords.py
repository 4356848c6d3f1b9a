"""argon2id hashing and verification."""

from __future__ import annotations

from typing import Literal

import argon2
import pytest

from flotilla_auth.adapters.passwords import Argon2PasswordHasher


class CountingArgon2(argon2.PasswordHasher):
    """Counts real verifications, to prove the dummy path does the work."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=8, parallelism=1)
        self.verifications = 0

    def verify(self, hash: str | bytes, password: str | bytes) -> Literal[True]:
        self.verifications += 1
        return super().verify(hash, password)


@pytest.fixture
def argon() -> CountingArgon2:
    return CountingArgon2()


@pytest.fixture
def hasher(argon: CountingArgon2) -> Argon2PasswordHasher:
    return Argon2PasswordHasher(argon)


async def test_hash_is_argon2id_and_salted(hasher: Argon2PasswordHasher) -> None:
    first = await hasher.hash("correct horse")
    second = await hasher.hash("correct horse")
    assert first.startswith("$argon2id$")
    assert first != second
    assert "correct horse" not in first


async def test_verify_accepts_the_password_and_nothing_else(hasher: Argon2PasswordHasher) -> None:
    stored = await hasher.hash("correct horse")
    assert await hasher.verify(stored, "correct horse")
    assert not await hasher.verify(stored, "Correct horse")
    assert not await hasher.verify(stored, "")


async def test_a_damaged_hash_verifies_nothing(hasher: Argon2PasswordHasher) -> None:
    assert not await hasher.verify("not a hash", "correct horse")
    assert hasher.needs_rehash("not a hash")


async def test_dummy_verification_runs_argon2(
    hasher: Argon2PasswordHasher, argon: CountingArgon2
) -> None:
    await hasher.verify_dummy("anything")
    assert argon.verifications == 1


async def test_weaker_parameters_need_a_rehash(hasher: Argon2PasswordHasher) -> None:
    weak = await hasher.hash("correct horse")
    assert not hasher.needs_rehash(weak)
    assert Argon2PasswordHasher().needs_rehash(weak)


def test_default_parameters_follow_rfc_9106_low_memory() -> None:
    params = argon2.extract_parameters(argon2.PasswordHasher().hash("x"))
    assert params.type is argon2.Type.ID
    assert params.memory_cost >= 64 * 1024
    assert params.time_cost >= 3
