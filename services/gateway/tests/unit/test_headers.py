from __future__ import annotations

from flotilla_gateway.headers import (
    REQUEST_FIELDS,
    RESPONSE_FIELDS,
    connection_tokens,
    drop_nominated,
)


def test_connection_tokens_are_lowercased_and_trimmed() -> None:
    assert connection_tokens(b" Keep-Alive , X-Foo,,close ") == {b"keep-alive", b"x-foo", b"close"}


def test_drop_nominated_removes_only_named_fields() -> None:
    lines = [b"X-Foo: 1\r\n", b"Accept: */*\r\n", b"x-foo : 2\r\n"]
    assert drop_nominated(lines, frozenset({b"x-foo", b"close"})) == [b"Accept: */*\r\n"]
    assert drop_nominated(lines, frozenset({b"keep-alive"})) == lines


def test_hop_by_hop_fields_never_cross_in_either_direction() -> None:
    hop_by_hop = [b"connection", b"keep-alive", b"proxy-authorization", b"te", b"trailer"]
    hop_by_hop += [b"transfer-encoding", b"upgrade", b"proxy-authenticate"]
    for name in hop_by_hop:
        assert name in REQUEST_FIELDS
        assert name in RESPONSE_FIELDS
