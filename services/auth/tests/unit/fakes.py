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
from typing import Any, Self

from flotilla_auth.domain.login_protection import FailureCounter, LoginProtection
from flotilla_auth.domain.password_policy import PasswordPolicy
from flotilla_auth.domain.refresh_tokens import RefreshToken
from flotilla_auth.domain.service_clients import VerifiedAssertion
from flotilla_auth.domain.signing_keys import KeySchedule, KeyStatus, SigningKey
from flotilla_auth.domain.token_policy import TokenPolicy
from flotilla_auth.domain.users import User
from flotilla_auth.service_layer.errors import InvalidClient, StorageConflict

PASSWORD = "correct horse"
T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
POLICY = TokenPolicy(
    issuer="flotilla-auth", audience="flotilla", access_token_ttl_s=600, refresh_token_ttl_s=3600
)
SCHEDULE = KeySchedule(publish_delay_s=600, rotation_period_s=86_400, access_token_ttl_s=600)
PROTECTION = LoginProtection()
PASSWORD_POLICY = PasswordPolicy.with_common(["password1234", "correcthorsebatterystaple"])


@dataclass(frozen=True)
class AuditEvent:
    actor: str
    action: str
    at: datetime
    target: str | None
    outcome: str
    details: dict[str, Any]


@dataclass
class FakeStore:
    users: dict[str, User] = field(default_factory=dict)
    tokens: dict[str, RefreshToken] = field(default_factory=dict)
    keys: dict[str, SigningKey] = field(default_factory=dict)
    throttles: dict[str, FailureCounter] = field(default_factory=dict)
    assertions: dict[tuple[str, str], datetime] = field(default_factory=dict)
    audit: list[AuditEvent] = field(default_factory=list)
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
        """The domain state (what a refusal must leave as it was)."""
        return (dict(self.users), dict(self.tokens), dict(self.keys))

    def actions(self) -> list[str]:
        return [event.action for event in self.audit]


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

    async def list_page(self, *, after: str | None, limit: int) -> Sequence[User]:
        ordered = sorted(self.rows.values(), key=lambda u: u.id)
        return [u for u in ordered if after is None or u.id > after][:limit]

    async def update(self, user: User) -> None:
        self.rows[user.id] = user


class FakeRefreshTokens:
    def __init__(
        self, tokens: dict[str, RefreshToken], store: FakeStore, users: dict[str, User]
    ) -> None:
        self.rows = tokens
        self._store = store
        self._users = users  # the unit of work's own copy, as a join would see it

    async def add(self, token: RefreshToken) -> None:
        assert all(t.token_hash != token.token_hash for t in self.rows.values())
        self.rows[token.id] = token

    async def get_by_hash(self, token_hash: str) -> RefreshToken | None:
        return next((t for t in self.rows.values() if t.token_hash == token_hash), None)

    async def get_with_owner(self, token_hash: str) -> tuple[RefreshToken, User | None] | None:
        token = await self.get_by_hash(token_hash)
        return (token, self._users.get(token.user_id)) if token is not None else None

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

    async def family_revoked(self, family_id: str) -> bool:
        return any(
            t.family_id == family_id and t.revoked_at is not None for t in self.rows.values()
        )

    async def families_revoked_since(self, since: datetime) -> Sequence[str]:
        return sorted(
            {
                t.family_id
                for t in self.rows.values()
                if t.revoked_at is not None and t.revoked_at >= since
            }
        )

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
        return self._in(KeyStatus.ACTIVE)

    async def get_next(self) -> SigningKey | None:
        return self._in(KeyStatus.NEXT)

    def _in(self, status: KeyStatus) -> SigningKey | None:
        return next((k for k in self.rows.values() if k.status is status), None)

    async def add(self, key: SigningKey) -> None:
        # The database's unique markers see rows other transactions committed meanwhile.
        committed = [k for k in self._store.keys.values() if k.status is key.status]
        taken = key.status is not KeyStatus.RETIRED and (committed or self._in(key.status))
        if self._store.refuse_keys or taken:
            raise StorageConflict(f"{key.status} key exists")
        self.rows[key.kid] = key

    async def retire(self, kid: str, at: datetime) -> bool:
        key = self.rows.get(kid)
        if key is None or key.status is not KeyStatus.ACTIVE:
            return False
        self.rows[kid] = key.retired(at)
        return True

    async def activate(self, kid: str, at: datetime) -> bool:
        key = self.rows.get(kid)
        if key is None or key.status is not KeyStatus.NEXT:
            return False
        if self._in(KeyStatus.ACTIVE) is not None:
            raise StorageConflict("another key is active")
        self.rows[kid] = key.activated(at)
        return True

    async def list_all(self) -> Sequence[SigningKey]:
        return sorted(self.rows.values(), key=lambda k: k.created_at, reverse=True)


class FakeThrottles:
    def __init__(self, rows: dict[str, FailureCounter]) -> None:
        self.rows = rows

    async def get(self, key: str, *, for_update: bool = False) -> FailureCounter | None:
        return self.rows.get(key)

    async def get_pair(
        self, first: str, second: str
    ) -> tuple[FailureCounter | None, FailureCounter | None]:
        return self.rows.get(first), self.rows.get(second)

    async def put(self, counter: FailureCounter) -> None:
        self.rows[counter.key] = counter

    async def delete(self, key: str) -> None:
        self.rows.pop(key, None)

    async def delete_expired(self, now: datetime) -> int:
        expired = [key for key, c in self.rows.items() if c.expires_at <= now]
        for key in expired:
            del self.rows[key]
        return len(expired)


class FakeAssertions:
    def __init__(self, rows: dict[tuple[str, str], datetime]) -> None:
        self.rows = rows

    async def remember(self, *, client_id: str, jti: str, expires_at: datetime) -> bool:
        if (client_id, jti) in self.rows:
            return False
        self.rows[client_id, jti] = expires_at
        return True

    async def delete_expired(self, now: datetime) -> int:
        expired = [key for key, at in self.rows.items() if at <= now]
        for key in expired:
            del self.rows[key]
        return len(expired)


class FakeAudit:
    def __init__(self, events: list[AuditEvent]) -> None:
        self.events = events

    async def record(
        self,
        *,
        actor: str,
        action: str,
        at: datetime,
        target: str | None = None,
        outcome: str = "success",
        details: Mapping[str, Any] | None = None,
    ) -> None:
        self.events.append(AuditEvent(actor, action, at, target, outcome, dict(details or {})))


class FakeUnitOfWork:
    def __init__(self, store: FakeStore, *, write: bool) -> None:
        self._store = store
        self._write = write

    async def __aenter__(self) -> Self:
        self.users = FakeUsers(dict(self._store.users))
        self.refresh_tokens = FakeRefreshTokens(
            dict(self._store.tokens), self._store, self.users.rows
        )
        self.signing_keys = FakeSigningKeys(dict(self._store.keys), self._store)
        self.login_throttles = FakeThrottles(dict(self._store.throttles))
        self.client_assertions = FakeAssertions(dict(self._store.assertions))
        self.audit = FakeAudit(list(self._store.audit))
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
        self._store.throttles = self.login_throttles.rows
        self._store.assertions = self.client_assertions.rows
        self._store.audit = self.audit.events
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
    def __init__(self, kid: str = "fake-kid") -> None:
        self.kid = kid

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
            rival = self._key("rival", now).activated(now)
            self._store.keys[rival.kid] = rival
        return self._key(f"key-{self.generated}", now)

    def signer_for(self, key: SigningKey) -> FakeSigner:
        return FakeSigner(key.kid)

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


class FakeAssertionVerifier:
    """Accepts assertions of the form `<client_id>:<jti>:<seconds to expiry>`."""

    def verify(self, assertion: str, *, now: datetime) -> VerifiedAssertion:
        client_id, jti, ttl = assertion.split(":")
        if client_id == "forged":
            raise InvalidClient("bad signature", client_id=client_id)
        return VerifiedAssertion(
            client_id=client_id,
            jti=jti,
            expires_at=now + timedelta(seconds=int(ttl)),
            certificate_serial="1",
        )


def later(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)
