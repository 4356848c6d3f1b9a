"""Finding a request's shard: account ids in paths, owners from the query or the token."""

from __future__ import annotations

import pytest

from flotilla_gateway.balancer import Candidates, Registry
from flotilla_gateway.dispatcher import RouteTarget
from flotilla_gateway.metrics import RouteMetrics
from flotilla_gateway.problems import ProblemCatalog, ProblemTemplate
from flotilla_gateway.request import Request
from flotilla_gateway.routes import POLICY, RoutePolicy
from flotilla_gateway.shards import (
    AccountShard,
    OwnerShard,
    account_shard,
    owner_parameter,
    shard_router,
)
from flotilla_gateway.upstream import ConnectionPool, Endpoint
from flotilla_kit.problems import problem_type
from flotilla_kit.sharding import home_shard

PROBLEMS = ProblemCatalog(max_body_bytes=1024, max_header_bytes=1024)
ACCOUNT = "/api/v1/accounts/{account_id}"
ENTRIES = "/api/v1/accounts/{account_id}/entries"


def _pool(endpoint: Endpoint) -> ConnectionPool:
    return ConnectionPool(
        endpoint,
        ssl_context=None,
        connect_timeout_s=1.0,
        max_idle=1,
        idle_timeout_s=1.0,
        max_response_bytes=1024,
    )


def registry_with(*shards: int | None) -> Registry:
    """Accounts instances, one per argument, serving that shard; all healthy."""
    registry = Registry(_pool, unhealthy_after=1, services=("accounts",))
    for n, shard in enumerate(shards):
        instance = registry.add("accounts", f"a-{n}", f"http://127.0.0.1:{9000 + n}", shard=shard)
        registry.record_check(instance, ok=True)
    return registry


def request(target: str) -> Request:
    built = Request("127.0.0.1")
    built.target = target.encode("latin-1")
    built.path = target.partition("?")[0]
    return built


def shard_of_choice(found: Candidates | ProblemTemplate) -> int | None:
    assert isinstance(found, Candidates), found
    return found.shard


def slug(found: Candidates | ProblemTemplate) -> tuple[int, str]:
    assert isinstance(found, ProblemTemplate), found
    return found.status, found.slug


def owner_on(shard: int, shards: int) -> str:
    """A subject whose home shard among `shards` is `shard`."""
    return next(f"user-{n}" for n in range(1000) if home_shard(f"user-{n}", shards) == shard)


# account ids


@pytest.mark.parametrize(
    ("account_id", "shard"),
    [
        ("acc_0_ab12", 0),
        ("acc_1_ff", 1),
        ("sys_1_cash_eur", 1),
        ("acc_x_1", None),
        ("acc_1_", None),
        ("acc-1", None),
        ("usr_1_ab", None),
        ("acc_1234_ab", None),
        ("acc_²_ab", None),  # a Unicode digit `int` cannot read
        ("", None),
    ],
)
def test_account_ids_name_their_shard(account_id: str, shard: int | None) -> None:
    assert account_shard(account_id) == shard


@pytest.mark.parametrize(
    ("template", "path", "account_id"),
    [
        (ACCOUNT, "/api/v1/accounts/acc_1_ab", "acc_1_ab"),
        (ENTRIES, "/api/v1/accounts/acc_1_ab/entries", "acc_1_ab"),
        # Decoded as the service's server decodes it.
        (ACCOUNT, "/api/v1/accounts/acc_%31_ab", "acc_1_ab"),
        (ACCOUNT, "/api/v1/accounts/acc_1_%C3%A9", "acc_1_é"),
        # A parameter before the id: no fixed offset, found by segment.
        ("/x/{owner}/{account_id}/y", "/x/bob/acc_0_c/y", "acc_0_c"),
        ("/x/{owner}/{account_id}", "/x/bob/acc_0_c", "acc_0_c"),
    ],
)
def test_the_account_id_is_read_from_its_segment(template: str, path: str, account_id: str) -> None:
    assert AccountShard(template, PROBLEMS).account_id(path) == account_id


def test_an_account_id_routes_to_its_shard() -> None:
    registry = registry_with(0, 0, 1, 1)
    service = registry.service("accounts")
    router = AccountShard(ENTRIES, PROBLEMS)
    for path, shard in [
        ("/api/v1/accounts/acc_0_ab/entries", 0),
        ("/api/v1/accounts/acc_1_ab/entries", 1),
        ("/api/v1/accounts/acc_%31_ab/entries", 1),
        ("/api/v1/accounts/sys_1_cash_eur/entries", 1),
    ]:
        assert shard_of_choice(router.select(service, request(path), "alice")) == shard


@pytest.mark.parametrize(
    "account_id",
    [
        "acc-1",  # names no shard
        "acc_x_1",
        "acc_%C2%B2_1",  # `²`: a Unicode digit `int` cannot read
        "acc_2_ab",  # a gap in the listed shards (0, 1, 4)
        "acc_3_ab",
        "acc_5_ab",  # beyond the last one
        "acc_999_ab",
    ],
)
def test_an_id_of_no_listed_shard_is_an_unknown_account(account_id: str) -> None:
    registry = registry_with(0, 1, 4)
    found = AccountShard(ACCOUNT, PROBLEMS).select(
        registry.service("accounts"), request(f"/api/v1/accounts/{account_id}"), "alice"
    )
    assert found is PROBLEMS.unknown_account
    assert slug(found) == (404, "not-found")


def test_a_listed_shard_with_no_healthy_instance_is_still_chosen() -> None:
    """The dispatcher turns its empty list into a 503; it is not an unknown account."""
    registry = registry_with(0, 1)
    one = registry.service("accounts").shard(1)
    assert one is not None
    registry.record_check(one.instances[0], ok=False)
    found = AccountShard(ACCOUNT, PROBLEMS).select(
        registry.service("accounts"), request("/api/v1/accounts/acc_1_ab"), None
    )
    assert found is one
    assert one.choose() is None


# owners


@pytest.mark.parametrize(
    ("query", "owner"),
    [
        (b"", None),
        (b"limit=5", None),
        (b"owner_id=alice", "alice"),
        (b"limit=5&owner_id=alice&x", "alice"),
        (b"owner_id=al%69ce", "alice"),
        (b"owner%5Fid=alice", "alice"),  # the service decodes names too
        (b"owner_id=a+b", "a b"),
        (b"owner_id=%C3%A9", "é"),
        (b"owner_ids=alice", None),
        (b"the_owner_id=alice", None),
        (b"owner=alice", None),
    ],
)
def test_the_owner_id_parameter(query: bytes, owner: str | None) -> None:
    assert owner_parameter(query) == owner


@pytest.mark.parametrize(
    "query",
    [
        b"owner_id=",
        b"owner_id",
        b"owner_id=&limit=5",
        b"owner_id=alice&owner_id=bob",
        b"owner_id=alice&owner_id=alice",
        b"owner_id=alice&owner%5Fid=bob",
    ],
)
def test_an_empty_or_repeated_owner_id_is_refused(query: bytes) -> None:
    with pytest.raises(ValueError, match="owner_id"):
        owner_parameter(query)


def test_the_owner_is_the_subject_unless_the_query_names_one() -> None:
    registry = registry_with(0, 0, 1, 1)
    service = registry.service("accounts")
    router = OwnerShard(PROBLEMS)
    zero, one = owner_on(0, 2), owner_on(1, 2)
    assert shard_of_choice(router.select(service, request("/api/v1/accounts"), zero)) == 0
    assert shard_of_choice(router.select(service, request("/api/v1/accounts"), one)) == 1
    assert shard_of_choice(router.select(service, request("/api/v1/accounts?limit=5"), one)) == 1
    # `?owner_id=` overrides the token's subject.
    asked = request(f"/api/v1/accounts?owner_id={one}")
    assert shard_of_choice(router.select(service, asked, zero)) == 1
    asked = request(f"/api/v1/accounts?owner_id={zero}")
    assert shard_of_choice(router.select(service, asked, one)) == 0


@pytest.mark.parametrize(
    "target",
    [
        "/api/v1/accounts?owner_id=",
        "/api/v1/accounts?owner_id",
        "/api/v1/accounts?owner_id=a&owner_id=b",
    ],
)
def test_an_empty_or_repeated_owner_id_is_a_400(target: str) -> None:
    registry = registry_with(0, 1)
    found = OwnerShard(PROBLEMS).select(registry.service("accounts"), request(target), "alice")
    assert slug(found) == (400, "bad-request")


def test_the_number_of_shards_comes_from_the_topology() -> None:
    router = OwnerShard(PROBLEMS)
    for shards in (1, 2, 3, 5):
        registry = registry_with(*range(shards))
        service = registry.service("accounts")
        assert service.shard_count == shards
        for n in range(20):
            owner = f"user-{n}"
            found = router.select(service, request("/api/v1/accounts"), owner)
            assert shard_of_choice(found) == home_shard(owner, shards)


def test_a_home_shard_missing_from_the_topology_is_unavailable() -> None:
    registry = registry_with(0, 2)  # shard 1 is not listed: N is still 3
    service = registry.service("accounts")
    found = OwnerShard(PROBLEMS).select(service, request("/api/v1/accounts"), owner_on(1, 3))
    assert slug(found) == (503, "unavailable")
    assert found is PROBLEMS.shard_unavailable("accounts", 1)
    assert isinstance(found, ProblemTemplate)
    reply = found.reply("rid")
    assert b"retry-after: 1\r\n" in reply.head.lower()
    assert b"'accounts' shard 1" in reply.body
    assert b'"type":"' + problem_type("unavailable").encode() in reply.body


# the route's choice


def target_for(method: str, path: str, registry: Registry) -> RouteTarget:
    policy = next(e for e in POLICY if (e.method, e.path) == (method, path))
    return RouteTarget(
        policy,
        registry.service(policy.service),
        RouteMetrics(path),
        10.0,
        shard_router(policy, PROBLEMS),
    )


def test_a_route_of_a_sharded_service_uses_its_shard() -> None:
    registry = registry_with(0, 1)
    target = target_for("GET", ACCOUNT, registry)
    assert shard_of_choice(target.candidates(request("/api/v1/accounts/acc_1_ab"), "u")) == 1
    assert slug(target.candidates(request("/api/v1/accounts/acc-1"), "u")) == (404, "not-found")
    listing = target_for("GET", "/api/v1/accounts", registry)
    owner = owner_on(1, 2)
    assert shard_of_choice(listing.candidates(request("/api/v1/accounts"), owner)) == 1


def test_an_unsharded_service_ignores_shard_by() -> None:
    registry = registry_with(None, None)
    service = registry.service("accounts")
    for method, path, target in [
        ("GET", ACCOUNT, "/api/v1/accounts/acc-1"),
        ("GET", ACCOUNT, "/api/v1/accounts/acc_7_ab"),
        ("GET", "/api/v1/accounts", "/api/v1/accounts?owner_id=&owner_id="),
    ]:
        route = target_for(method, path, registry)
        assert route.shard_router is not None
        assert route.candidates(request(target), "alice") is service.everyone


def test_only_entries_with_shard_by_get_a_router() -> None:
    routers = {(e.method, e.path): shard_router(e, PROBLEMS) for e in POLICY}
    assert isinstance(routers[("GET", ACCOUNT)], AccountShard)
    assert isinstance(routers[("POST", "/api/v1/accounts")], OwnerShard)
    assert routers[("POST", "/api/v1/transfers")] is None
    assert routers[("GET", "/api/v1/auth/me")] is None
    plain = RoutePolicy("GET", "/a", "s", "a:read")
    assert shard_router(plain, PROBLEMS) is None
