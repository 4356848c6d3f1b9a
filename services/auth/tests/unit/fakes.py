"""In-memory stand-ins for the ports, for unit tests of the use cases.

The fake unit of work works on copies and publishes them only on commit, so a test can
tell a refusal that wrote nothing from one that half-wrote.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Self

from flotilla_auth.domain.refresh_tokens import RefreshToken
from flotilla_auth.domain.signing_keys import KeyStatus, SigningKey
from flotilla_auth.domain.token_policy import TokenPolicy
from flotilla_auth.domain.users import User
from flotilla_auth.service_layer.errors import StorageConflict

PASSWORD = "correct horse"
T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
POLICY = TokenPolicy(
    issuer="flotilla-auth", audience="flotilla", access_token_ttl_s=600, refresh_token_ttl_s=3600
)


@dataclass
class FakeStore:
    users: dict[str, User] = field(default_factory=dict)
    tokens: dict[str, RefreshToken] = field(default_factory=dict)
    keys: dict[str, SigningKey] = field(default_factory=dict)
    commits: int = 0
    # Makes the next compare-and-set of a refresh token lose, as if a concurrent request
    # had spent the token between our read and our write.
    lose_next_spend: bool = False
    # Makes every insert of a signing key hit the unique constraint.
    refuse_keys: bool = False

    def add_user(
        self,
        username: str = "alice",
        password: str = PASSWORD,
        roles: tuple[str, ...] = ("customer",),
        *,
        disabled: bool = False,
    ) -> User:
        user = User(
            id=f"user-{len(self.users) + 1}",
            username=username,
            password_hash=FakePasswordHasher.HASH_PREFIX + password,
            roles=roles,
            created_at=T0,
            disabled=disabled,
        )
        self.users[user.id] = user
        return user

    def snapshot(self) -> tuple[object, ...]:
        return (dict(self.users), dict(self.tokens), dict(self.keys))


class FakeUsers:
    def __init__(self, users: dict[str, User]) -> None:
        self.rows = users

    async def get(self, user_id: str) -> User | None:
        return self.rows.get(user_id)

    async def get_by_username(self, username: str) -> User | None:
        return next((u for u in self.rows.values() if u.username == username), None)

    async def add(self, user: User) -> None:
        if await self.get_by_username(user.username) is not None:
            raise StorageConflict(user.username)
        self.rows[user.id] = user

    async def update(self, user: User) -> None:
        self.rows[user.id] = user


class FakeRefreshTokens:
    def __init__(self, tokens: dict[str, RefreshToken], store: FakeStore) -> None:
        self.rows = tokens
        self._store = store

    async def add(self, token: RefreshToken) -> None:
        assert all(t.token_hash != token.token_hash for t in self.rows.values())
        self.rows[token.id] = token

    async def get_by_hash(self, token_hash: str) -> RefreshToken | None:
        return next((t for t in self.rows.values() if t.token_hash == token_hash), None)

    async def mark_used(self, token_id: str, at: datetime) -> bool:
        token = self.rows[token_id]
        if self._store.lose_next_spend:
            self._store.lose_next_spend = False
            return False
        if token.used_at is not None or token.revoked_at is not None:
            return False
        self.rows[token_id] = token.spent(at)
        return True

    async def revoke_family(self, family_id: str, at: datetime) -> int:
        return self._revoke(lambda t: t.family_id == family_id, at)

    async def revoke_user(self, user_id: str, at: datetime) -> int:
        return self._revoke(lambda t: t.user_id == user_id, at)

    def _revoke(self, match: Callable[[RefreshToken], bool], at: datetime) -> int:
        count = 0
        for token_id, token in list(self.rows.items()):
            if match(token) and token.revoked_at is None:
                self.rows[token_id] = token.revoked(at)
                count += 1
        return count


class FakeSigningKeys:
    def __init__(self, keys: dict[str, SigningKey], store: FakeStore) -> None:
        self.rows = keys
        self._store = store

    async def get_active(self) -> SigningKey | None:
        return next((k for k in self.rows.values() if k.status is KeyStatus.ACTIVE), None)

    async def add(self, key: SigningKey) -> None:
        # The database's unique marker sees rows other transactions committed meanwhile.
        committed = [k for k in self._store.keys.values() if k.status is KeyStatus.ACTIVE]
        active = committed or await self.get_active()
        if self._store.refuse_keys or (key.status is KeyStatus.ACTIVE and active):
            raise StorageConflict("active key exists")
        self.rows[key.kid] = key

    async def list_all(self) -> Sequence[SigningKey]:
        return sorted(self.rows.values(), key=lambda k: k.created_at, reverse=True)


class FakeUnitOfWork:
    def __init__(self, store: FakeStore, *, write: bool) -> None:
        self._store = store
        self._write = write

    async def __aenter__(self) -> Self:
        self.users = FakeUsers(dict(self._store.users))
        self.refresh_tokens = FakeRefreshTokens(dict(self._store.tokens), self._store)
        self.signing_keys = FakeSigningKeys(dict(self._store.keys), self._store)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None  # uncommitted copies are simply dropped: a rollback

    async def commit(self) -> None:
        assert self._write, "a read-only unit of work must not commit"
        self._store.users = self.users.rows
        self._store.tokens = self.refresh_tokens.rows
        self._store.keys = self.signing_keys.rows
        self._store.commits += 1


class FakeUowFactory:
    def __init__(self, store: FakeStore) -> None:
        self.store = store

    def __call__(self, *, write: bool = True) -> FakeUnitOfWork:
        return FakeUnitOfWork(self.store, write=write)


class FakePasswordHasher:
    HASH_PREFIX = "fake$"
    OLD_PREFIX = "old$"

    def __init__(self) -> None:
        self.dummy_checks = 0
        self.checks = 0
        self.hashes = 0

    async def hash(self, password: str) -> str:
        self.hashes += 1
        return self.HASH_PREFIX + password

    async def verify(self, password_hash: str, password: str) -> bool:
        self.checks += 1
        _, _, stored = password_hash.partition("$")
        return stored == password

    async def verify_dummy(self, password: str) -> None:
        self.dummy_checks += 1

    def needs_rehash(self, password_hash: str) -> bool:
        return password_hash.startswith(self.OLD_PREFIX)


class FakeSigner:
    kid = "fake-kid"

    def sign(self, claims: Mapping[str, object]) -> str:
        return json.dumps(dict(claims))


class FakeKeyMaterial:
    def __init__(self, store: FakeStore, *, lose_race: bool = False) -> None:
        self.generated = 0
        self._store = store
        self._lose_race = lose_race

    def generate(self, *, now: datetime) -> SigningKey:
        self.generated += 1
        if self._lose_race:
            # Another instance commits its key while we are making ours.
            self._lose_race = False
            rival = self._key("rival", now)
            self._store.keys[rival.kid] = rival
        return self._key(f"key-{self.generated}", now)

    def signer_for(self, key: SigningKey) -> FakeSigner:
        return FakeSigner()

    @staticmethod
    def _key(kid: str, now: datetime) -> SigningKey:
        return SigningKey(
            kid=kid,
            algorithm="EdDSA",
            public_jwk={"kty": "OKP", "crv": "Ed25519", "x": kid},
            sealed_private_key="sealed",
            created_at=now,
        )


def retired(key: SigningKey, at: datetime) -> SigningKey:
    return replace(key, status=KeyStatus.RETIRED, retired_at=at)


def later(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)
