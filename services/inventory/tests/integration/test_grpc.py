"""The reservation gRPC API for real: a server on a real port, mutual TLS, real tokens,
SQLite and PostgreSQL. Unary calls, the ReserveStream, refusals as answers, status codes
only for what is not an answer."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import grpc
import pytest
from grpc import aio
from prometheus_client.parser import text_string_to_metric_families

from flotilla_kit.rpc import bearer
from flotilla_kit.testing import TokenMinter
from flotilla_proto.inventory.v1 import inventory_pb2 as pb
from flotilla_proto.inventory.v1 import inventory_pb2_grpc as pb_grpc

from .harness import TIMEOUT_S, Instance, Pki, stock_events, take_snapshot

SERVICE = "/flotilla.inventory.v1.Inventory"


async def read(stream: Any) -> pb.Reservation:
    """The next answer of a ReserveStream (not its end)."""
    answer = await stream.read()
    assert isinstance(answer, pb.Reservation), answer
    return answer


def lines(*pairs: tuple[str, int]) -> list[pb.Line]:
    return [pb.Line(product_id=p, quantity=q) for p, q in pairs]


async def test_reserve_commit_release_and_availability(served: Instance) -> None:
    mug = await served.product("MUG-1", on_hand=10, price_minor=1250)
    cup = await served.product("CUP-1", on_hand=2, price_minor=800)
    held = await served.reserve("ord-1", (mug, 3), (cup, 2), hold_s=60)
    assert (held.reservation_id, held.state, held.refusal) == ("ord-1", pb.HELD, 0)
    assert sorted((line.product_id, line.quantity, line.unit_price_minor, line.currency)
                  for line in held.lines) == sorted([(mug, 3, 1250, "EUR"), (cup, 2, 800, "EUR")])  # fmt: skip
    assert held.expires_at_unix_ms > 0

    availability = await served.grpc.GetAvailability(
        pb.AvailabilityRequest(product_ids=[cup, "prd_nope", mug]),
        metadata=served.service_auth,
        timeout=TIMEOUT_S,
    )
    assert [(p.product_id, p.found, p.available, p.unit_price_minor) for p in
            availability.products] == [(cup, True, 0, 800), ("prd_nope", False, 0, 0),
                                       (mug, True, 7, 1250)]  # fmt: skip
    assert availability.products[2].name == "Product MUG-1"

    committed = await served.commit("ord-1")
    assert committed.state == pb.COMMITTED
    assert await served.stock(mug) == (7, 0)
    assert await served.stock(cup) == (0, 0)
    assert (await served.commit("ord-1")).state == pb.COMMITTED
    assert await served.stock(mug) == (7, 0)

    await served.reserve("ord-2", (mug, 5))
    released = await served.release("ord-2")
    assert (released.state, len(released.lines)) == (pb.RELEASED, 1)
    assert (await served.release("ord-2")).state == pb.RELEASED
    assert await served.stock(mug) == (7, 0)


async def test_refusals_are_answers_that_hold_nothing(served: Instance) -> None:
    mug = await served.product("MUG-1", on_hand=2)
    before = await take_snapshot(served.database)
    invalid = {
        "no lines": await served.reserve("r1"),
        "quantity 0": await served.reserve("r2", (mug, 0)),
        "negative quantity": await served.reserve("r3", (mug, -1)),
        "huge quantity": await served.reserve("r4", (mug, 10_001)),
        "duplicate lines": await served.reserve("r5", (mug, 1), (mug, 1)),
        "too many lines": await served.reserve("r6", *[(f"prd_{i}", 1) for i in range(101)]),
        "empty id": await served.reserve("", (mug, 1)),
        "id too long": await served.reserve("r" * 65, (mug, 1)),
        "hold too long": await served.reserve("r7", (mug, 1), hold_s=3601),
        "negative hold": await served.reserve("r8", (mug, 1), hold_s=-5),
    }
    for case, answer in invalid.items():
        assert (answer.state, answer.refusal) == (pb.REFUSED, pb.INVALID), case
        assert answer.detail, case
        assert not answer.lines, case
    assert await take_snapshot(served.database) == before

    short = await served.reserve("r9", (mug, 3))
    assert (short.state, short.refusal, list(short.short_products)) == (
        pb.REFUSED, pb.OUT_OF_STOCK, [mug],
    )  # fmt: skip
    unknown = await served.reserve("r10", (mug, 1), ("prd_nope", 1))
    assert (unknown.state, unknown.refusal, list(unknown.short_products)) == (
        pb.REFUSED, pb.UNKNOWN_PRODUCT, ["prd_nope"],
    )  # fmt: skip
    assert await served.stock(mug) == (2, 0)


async def test_release_first_leaves_a_tombstone_and_commit_of_nothing_is_unspecified(
    served: Instance,
) -> None:
    mug = await served.product(on_hand=5)
    tombstone = await served.release("ord-7")
    assert (tombstone.state, list(tombstone.lines)) == (pb.RELEASED, [])
    late = await served.reserve("ord-7", (mug, 1))
    assert (late.state, late.refusal) == (pb.REFUSED, pb.ALREADY_RELEASED)
    assert await served.stock(mug) == (5, 0)
    before = await take_snapshot(served.database)
    nothing = await served.commit("never-reserved")
    assert (nothing.reservation_id, nothing.state) == (
        "never-reserved",
        pb.RESERVATION_STATE_UNSPECIFIED,
    )
    assert await take_snapshot(served.database) == before


async def test_without_a_token_granting_inventory_reserve_nothing_happens(
    served: Instance, tokens: TokenMinter
) -> None:
    mug = await served.product(on_hand=5)
    before = await take_snapshot(served.database)
    refusals = {
        "no token": ((), grpc.StatusCode.UNAUTHENTICATED),
        "not a jwt": (bearer("not-a-jwt"), grpc.StatusCode.UNAUTHENTICATED),
        "expired": (
            bearer(tokens.mint("orders", ["service:orders"], ttl_s=-120)),
            grpc.StatusCode.UNAUTHENTICATED,
        ),
        "a customer": (
            bearer(tokens.mint("alice", ["customer"])),
            grpc.StatusCode.PERMISSION_DENIED,
        ),
        "an admin": (bearer(tokens.mint("ada", ["admin"])), grpc.StatusCode.PERMISSION_DENIED),
        "payments": (
            bearer(tokens.mint("payments", ["service:payments"])),
            grpc.StatusCode.PERMISSION_DENIED,
        ),
    }
    request = pb.ReserveRequest(reservation_id="ord-1", lines=lines((mug, 1)))
    ref = pb.ReservationRef(reservation_id="ord-1")
    for name, (metadata, code) in refusals.items():
        for call in (
            served.grpc.Reserve(request, metadata=metadata, timeout=TIMEOUT_S),
            served.grpc.Release(ref, metadata=metadata, timeout=TIMEOUT_S),
            served.grpc.Commit(ref, metadata=metadata, timeout=TIMEOUT_S),
            served.grpc.GetAvailability(
                pb.AvailabilityRequest(product_ids=[mug]), metadata=metadata, timeout=TIMEOUT_S
            ),
        ):
            with pytest.raises(aio.AioRpcError) as refused:
                await call
            assert refused.value.code() == code, name
        # A stream is refused at once, before it sends anything (reading first).
        stream = served.grpc.ReserveStream(metadata=metadata, timeout=TIMEOUT_S)
        with pytest.raises(aio.AioRpcError) as refused:
            await stream.read()
        assert refused.value.code() == code, name
    assert await take_snapshot(served.database) == before


async def test_a_client_without_a_certificate_cannot_connect(
    served: Instance, dev_pki: Pki
) -> None:
    before = await take_snapshot(served.database)
    ca = await asyncio.to_thread(dev_pki("orders").ca.read_bytes)
    credentials = grpc.ssl_channel_credentials(root_certificates=ca)
    options = [("grpc.ssl_target_name_override", "localhost")]
    async with aio.secure_channel(
        f"127.0.0.1:{served.app.state.grpc_port}", credentials, options=options
    ) as channel:
        with pytest.raises(aio.AioRpcError) as refused:
            await pb_grpc.InventoryStub(channel).Release(
                pb.ReservationRef(reservation_id="ord-1"),
                metadata=served.service_auth,
                timeout=TIMEOUT_S,
            )
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert await take_snapshot(served.database) == before  # no tombstone was written


async def test_a_message_that_does_not_parse_is_invalid_argument(served: Instance) -> None:
    channel = served.channel
    garbage = b"\xff\xff\xff\xff"
    for method in ("Reserve", "Release", "Commit", "GetAvailability"):
        raw: Any = channel.unary_unary(f"{SERVICE}/{method}")
        with pytest.raises(aio.AioRpcError) as refused:
            await raw(garbage, metadata=served.service_auth, timeout=TIMEOUT_S)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, method
        assert "DecodeError" not in (refused.value.details() or "")
    stream: Any = channel.stream_stream(f"{SERVICE}/ReserveStream")(
        metadata=served.service_auth, timeout=TIMEOUT_S
    )
    await stream.write(garbage)
    with pytest.raises(aio.AioRpcError) as refused:
        await stream.read()
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_text_the_kit_refuses_is_invalid_argument_naming_the_field(
    served: Instance,
) -> None:
    before = await take_snapshot(served.database)
    reserve = pb.ReserveRequest(reservation_id="ord-1", hold_s=60)
    reserve.lines.add(product_id="prd\x00", quantity=1)
    for call, field in (
        (served.grpc.Reserve(reserve, metadata=served.service_auth, timeout=TIMEOUT_S), "lines[0].product_id"),
        (served.grpc.Release(pb.ReservationRef(reservation_id="\u202eord"), metadata=served.service_auth, timeout=TIMEOUT_S), "reservation_id"),
        (served.grpc.GetAvailability(pb.AvailabilityRequest(product_ids=["a", "b\n"]), metadata=served.service_auth, timeout=TIMEOUT_S), "product_ids[1]"),
    ):  # fmt: skip
        with pytest.raises(aio.AioRpcError) as refused:
            await call
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, field
        assert (refused.value.details() or "").startswith(f"{field} holds"), field
    assert await take_snapshot(served.database) == before


async def test_availability_asks_for_one_to_a_hundred_products(served: Instance) -> None:
    for ids in ([], [f"prd_{i}" for i in range(101)]):
        with pytest.raises(aio.AioRpcError) as refused:
            await served.grpc.GetAvailability(
                pb.AvailabilityRequest(product_ids=ids),
                metadata=served.service_auth,
                timeout=TIMEOUT_S,
            )
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_many_requests_on_one_stream_are_each_answered_by_id(served: Instance) -> None:
    mug = await served.product("MUG-1", on_hand=150)
    cup = await served.product("CUP-1", on_hand=1)
    requests = [
        pb.ReserveRequest(reservation_id=f"s-{i}", lines=lines((mug, 1))) for i in range(150)
    ]
    requests += [
        pb.ReserveRequest(reservation_id="s-3", lines=lines((mug, 1))),  # a repeat
        pb.ReserveRequest(reservation_id="s-cup", lines=lines((cup, 2))),  # short
        pb.ReserveRequest(reservation_id="s-bad", lines=lines((mug, 0))),  # invalid
        pb.ReserveRequest(reservation_id="s-nope", lines=lines(("prd_nope", 1))),
        pb.ReserveRequest(reservation_id="s-more", lines=lines((mug, 1))),  # one too many
    ]
    random.Random(4).shuffle(requests)
    stream = served.grpc.ReserveStream(metadata=served.service_auth, timeout=TIMEOUT_S * 3)

    async def write_all() -> None:
        for request in requests:
            await stream.write(request)
        await stream.done_writing()

    writer = asyncio.create_task(write_all())
    answers: list[pb.Reservation] = []
    async for answer in stream:
        answers.append(answer)
    await writer
    assert len(answers) == len(requests)
    assert sorted(a.reservation_id for a in answers) == sorted(r.reservation_id for r in requests)
    by_id: dict[str, list[pb.Reservation]] = {}
    for answer in answers:
        by_id.setdefault(answer.reservation_id, []).append(answer)
    held = [i for i, found in by_id.items() if found[0].state == pb.HELD]
    assert len(held) == 150  # 151 asked for one mug each, 150 on hand
    assert [a.state for a in by_id["s-3"]] == [pb.HELD, pb.HELD]
    assert (by_id["s-cup"][0].refusal, by_id["s-bad"][0].refusal, by_id["s-nope"][0].refusal) == (
        pb.OUT_OF_STOCK, pb.INVALID, pb.UNKNOWN_PRODUCT,
    )  # fmt: skip
    refused_mugs = [i for i, found in by_id.items() if found[0].refusal == pb.OUT_OF_STOCK]
    assert len(refused_mugs) == 2  # s-cup and the one mug too many
    assert await served.stock(mug) == (150, 150)
    assert await served.stock(cup) == (1, 0)
    # The stream and the unary API are one desk: a unary Reserve of a streamed id repeats it.
    assert (await served.reserve(held[0], (mug, 1))).state == pb.HELD
    assert await served.stock(mug) == (150, 150)
    # Every event says what the stock became, the last one what it is now.
    events = [e["data"] for e in await stock_events(served.database) if e["subject"] == mug]
    assert events[-1]["reserved"] == 150
    assert [e["version"] for e in events] == sorted(e["version"] for e in events)


async def test_a_stream_reads_on_while_answers_are_written(served: Instance) -> None:
    """Answers come while the client is still writing: the stream is a conversation, not
    a batch job (each write waits for the previous answer here)."""
    mug = await served.product(on_hand=20)
    stream = served.grpc.ReserveStream(metadata=served.service_auth, timeout=TIMEOUT_S)
    for i in range(20):
        await stream.write(pb.ReserveRequest(reservation_id=f"c-{i}", lines=lines((mug, 1))))
        answer = await read(stream)
        assert (answer.reservation_id, answer.state) == (f"c-{i}", pb.HELD)
    await stream.done_writing()
    assert await stream.read() is aio.EOF
    assert await served.stock(mug) == (20, 20)


async def test_shutting_down_refuses_new_calls_and_ends_streams_unavailable(
    served: Instance,
) -> None:
    mug = await served.product(on_hand=5)
    stream = served.grpc.ReserveStream(metadata=served.service_auth, timeout=TIMEOUT_S)
    await stream.write(pb.ReserveRequest(reservation_id="d-1", lines=lines((mug, 1))))
    assert (await read(stream)).state == pb.HELD
    served.app.state.rpc.close()
    with pytest.raises(aio.AioRpcError) as ended:
        await stream.read()
    assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
    with pytest.raises(aio.AioRpcError) as refused:
        await served.reserve("d-2", (mug, 1))
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    with pytest.raises(aio.AioRpcError) as refused:
        await served.grpc.ReserveStream(metadata=served.service_auth, timeout=TIMEOUT_S).read()
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert await served.stock(mug) == (5, 1)


async def test_metrics_count_answers_and_time_methods(served: Instance) -> None:
    mug = await served.product(on_hand=1)
    await served.reserve("m-1", (mug, 1))
    await served.reserve("m-2", (mug, 1))
    await served.commit("m-1")
    await served.release("m-3")
    stream = served.grpc.ReserveStream(metadata=served.service_auth, timeout=TIMEOUT_S)
    await stream.write(pb.ReserveRequest(reservation_id="m-1", lines=lines((mug, 1))))
    assert (await read(stream)).state == pb.COMMITTED
    await stream.done_writing()
    response = await served.http.get("/metrics")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }

    def count(operation: str, outcome: str) -> float:
        labels = (("operation", operation), ("outcome", outcome), ("service", "inventory"))
        return samples.get(("flotilla_inventory_reservations_total", labels), 0.0)

    assert count("reserve", "held") == 1
    assert count("reserve", "out_of_stock") == 1
    assert count("reserve", "committed") == 1  # the streamed repeat of m-1
    assert count("commit", "committed") == 1
    assert count("release", "released") == 1
    timed = {
        dict(labels)["method"]: value
        for (name, labels), value in samples.items()
        if name == "flotilla_grpc_server_handling_seconds_count"
    }
    assert timed == {"Reserve": 2, "Commit": 1, "Release": 1, "ReserveStream": 1}
