"""Which shard of a sharded service a request goes to.

A policy entry's `shard_by` says how to find it (see `routes.py`); the answer is the
shard's `Candidates`, kept ready by the balancer, or the problem to answer with instead.
Everything but the request's own values is resolved at start, so finding the shard costs
a slice and a parse of the id (`shard_by="account_id"`), of the shard's number
(`shard_by="shard"`) or a hash of the owner (`shard_by="owner"`), then one index into
the service's tuple of shards.

What the gateway reads must be what the service reads, or a request could be routed by
one value and served by another: path segments and query parameters are percent-decoded
the way the services' ASGI server and Starlette decode them.
"""

from __future__ import annotations

from typing import Protocol
from urllib.parse import parse_qsl, unquote

from flotilla_gateway.balancer import Candidates, Service
from flotilla_gateway.problems import ProblemCatalog, ProblemTemplate
from flotilla_gateway.request import Request
from flotilla_gateway.routes import (
    SHARD_BY_ACCOUNT_ID,
    SHARD_BY_NUMBER,
    SHARD_BY_OWNER,
    RoutePolicy,
)
from flotilla_kit.sharding import home_shard, shard_of

__all__ = [
    "AccountShard",
    "OwnerShard",
    "ShardRouter",
    "account_shard",
    "numbered_shard",
    "owner_parameter",
    "shard_router",
]

OWNER_ID = "owner_id"
_OWNER_NAME = OWNER_ID.encode("ascii")
_OWNER_PREFIX = _OWNER_NAME + b"="
_ACCOUNT_SEGMENT = "{" + SHARD_BY_ACCOUNT_ID + "}"
_NUMBER_SEGMENT = "{" + SHARD_BY_NUMBER + "}"
_MAX_SHARD_DIGITS = 4
# Home shards remembered per owner; forgotten all at once beyond this many owners.
_MAX_REMEMBERED_OWNERS = 65_536


class ShardRouter(Protocol):
    def select(
        self, service: Service, request: Request, subject: str | None
    ) -> Candidates | ProblemTemplate:
        """The instances of the request's shard of (sharded) `service`, or a problem."""
        ...


def account_shard(account_id: str) -> int | None:
    """The shard an account id names, or None when it names none."""
    try:
        return shard_of(account_id)
    except ValueError:
        # `str.isdigit` accepts digits `int` does not read (`"²"`): not one of our ids.
        return None


def owner_parameter(query: bytes) -> str | None:
    """The `owner_id` of a query string, decoded as Starlette decodes it; None if absent.

    Raises ValueError when it is given more than once (a service would read one of them,
    the gateway might route by the other) or empty.
    """
    if b"%" not in query and b"+" not in query:
        # Nothing to decode: `parse_qsl` would split on `&` and `=` just like this.
        if _OWNER_NAME not in query:
            return None
        values = [
            part[len(_OWNER_PREFIX) :].decode("latin-1")
            for part in query.split(b"&")
            if part == _OWNER_NAME or part.startswith(_OWNER_PREFIX)
        ]
    else:
        values = [
            value
            for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True)
            if name == OWNER_ID
        ]
    if not values:
        return None
    if len(values) > 1:
        raise ValueError("owner_id is given more than once")
    if not values[0]:
        raise ValueError("owner_id is empty")
    return values[0]


def numbered_shard(segment: str) -> int | None:
    """The shard a `{shard}` segment names (`0`, `1`, ...), or None when it names none."""
    if not segment.isascii() or not segment.isdigit() or len(segment) > _MAX_SHARD_DIGITS:
        return None
    return int(segment)


class AccountShard:
    """`shard_by="account_id"`: the shard the `{account_id}` segment names; with
    `numbered=True`, `shard_by="shard"`: the shard the `{shard}` segment numbers.

    An id that names no shard, or a shard the topology does not list, is an account (a
    shard) that exists nowhere: 404, and no service is asked.
    """

    __slots__ = ("_index", "_parse", "_start", "_unknown")

    def __init__(self, template: str, problems: ProblemCatalog, *, numbered: bool = False) -> None:
        segments = template.split("/")
        index = segments.index(_NUMBER_SEGMENT if numbered else _ACCOUNT_SEGMENT)
        self._parse = numbered_shard if numbered else account_shard
        self._index = index
        # When every segment before the id is literal, the id starts at a fixed offset
        # (the path has matched the template): a slice, no split.
        literal = not any(segment.startswith("{") for segment in segments[:index])
        self._start = len("/".join(segments[:index])) + 1 if literal else -1
        self._unknown = problems.unknown_account

    def account_id(self, path: str) -> str:
        """The account id in a path that matched the template, percent-decoded."""
        start = self._start
        if start >= 0:
            end = path.find("/", start)
            segment = path[start:end] if end >= 0 else path[start:]
        else:
            segment = path.split("/")[self._index]
        return unquote(segment) if "%" in segment else segment

    def select(
        self, service: Service, request: Request, subject: str | None
    ) -> Candidates | ProblemTemplate:
        number = self._parse(self.account_id(request.path))
        group = None if number is None else service.shard(number)
        return self._unknown if group is None else group


class OwnerShard:
    """`shard_by="owner"`: the owner's home shard among the service's N shards.

    The owner is the `owner_id` query parameter when there is one (staff acting for a
    customer), else the token's subject. A repeated or empty `owner_id` is a 400. A
    home shard the topology lists no instance of is a 503, like one with no healthy
    instance: the accounts exist, they are just out of reach.
    """

    __slots__ = ("_bad_owner", "_homes", "_homes_of", "_problems")

    def __init__(self, problems: ProblemCatalog) -> None:
        self._problems = problems
        self._bad_owner = problems.bad_owner
        # owner -> home shard among `_homes_of` shards: a dict lookup, not a SHA-256.
        self._homes: dict[str, int] = {}
        self._homes_of = 0

    def home(self, owner: str, shards: int) -> int:
        """`home_shard(owner, shards)`, remembered while the number of shards holds."""
        homes = self._homes
        if shards != self._homes_of:
            homes.clear()
            self._homes_of = shards
        number = homes.get(owner)
        if number is None:
            if len(homes) >= _MAX_REMEMBERED_OWNERS:
                homes.clear()
            number = homes[owner] = home_shard(owner, shards)
        return number

    def select(
        self, service: Service, request: Request, subject: str | None
    ) -> Candidates | ProblemTemplate:
        owner = subject
        target = request.target
        mark = target.find(b"?")
        if mark >= 0:
            try:
                given = owner_parameter(target[mark + 1 :])
            except ValueError:
                return self._bad_owner
            if given is not None:
                owner = given
        if owner is None:
            return self._bad_owner  # public routes cannot shard by owner: not reached
        number = self.home(owner, service.shard_count)
        group = service.shards[number]
        if group is None:
            return self._problems.shard_unavailable(service.name, number)
        return group


def shard_router(policy: RoutePolicy, problems: ProblemCatalog) -> ShardRouter | None:
    """How to find the shard for `policy`'s requests; None when it does not say."""
    if policy.shard_by is None:
        return None
    if policy.shard_by == SHARD_BY_ACCOUNT_ID:
        return AccountShard(policy.path, problems)
    if policy.shard_by == SHARD_BY_NUMBER:
        return AccountShard(policy.path, problems, numbered=True)
    if policy.shard_by == SHARD_BY_OWNER:
        return OwnerShard(problems)
    raise ValueError(f"{policy.method} {policy.path}: unknown shard_by {policy.shard_by!r}")
