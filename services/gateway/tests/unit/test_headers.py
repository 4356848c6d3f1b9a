from __future__ import annotations

from flotilla_gateway.headers import (
    DROP,
    FIELD_KINDS_REMEMBERED,
    HOST,
    PAGE_CSP,
    PASS,
    REQUEST_FIELDS,
    REQUEST_KINDS,
    RESPONSE_FIELDS,
    RESPONSE_KINDS,
    SECURITY_FIELDS,
    SPOOFABLE_PREFIXES,
    TRANSFER_ENCODING,
    FieldKinds,
    connection_tokens,
    drop_nominated,
    security_block,
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


def test_the_security_block() -> None:
    plain = security_block(tls=False, page=False)
    assert b"strict-transport-security" not in plain
    assert b"x-content-type-options: nosniff\r\n" in plain
    assert b"referrer-policy: no-referrer\r\n" in plain
    assert b"x-frame-options: DENY\r\n" in plain
    assert b"content-security-policy: default-src 'none'; frame-ancestors 'none'\r\n" in plain
    secure = security_block(tls=True, page=True)
    assert secure.startswith(b"strict-transport-security: max-age=63072000; includeSubDomains\r\n")
    # A page runs the gateway's own scripts and styles, nothing inline, nothing else.
    page_csp = b"content-security-policy: " + PAGE_CSP.encode() + b"\r\n"
    assert page_csp in secure
    assert b"unsafe" not in secure
    assert b"script-src 'self';" in secure
    assert b"style-src 'self';" in secure
    # Every field the block sets is one the gateway drops from upstream responses.
    names = {line.split(b":")[0] for line in security_block(tls=True, page=False).splitlines()}
    assert names == SECURITY_FIELDS
    assert all(RESPONSE_FIELDS[name] == DROP for name in names)


def test_spoofable_request_fields_are_dropped() -> None:
    for name in (b"forwarded", b"x-real-ip"):
        assert REQUEST_FIELDS[name] == DROP
    assert b"x-user-id".startswith(SPOOFABLE_PREFIXES)
    assert b"x-forwarded-for".startswith(SPOOFABLE_PREFIXES)


def test_field_kinds_classify_each_spelling_once_and_remember_a_bounded_number() -> None:
    kinds = FieldKinds({b"host": HOST, b"te": DROP}, SPOOFABLE_PREFIXES)
    assert kinds(b"Host") == HOST  # case-insensitive, like the table
    assert kinds(b"TE") == DROP
    assert kinds(b"X-User-Id") == DROP  # a spoofable prefix
    assert kinds(b"Accept") == PASS
    assert kinds.known == {b"Host": HOST, b"TE": DROP, b"X-User-Id": DROP, b"Accept": PASS}
    for number in range(FIELD_KINDS_REMEMBERED + 10):
        assert kinds(b"X-Made-Up-%d" % number) == PASS
    assert len(kinds.known) == FIELD_KINDS_REMEMBERED  # a flood of names stays bounded
    assert kinds(b"x-forwarded-for") == DROP  # still classified, only not remembered


def test_the_shared_tables_agree_with_their_kinds() -> None:
    for name in (b"Connection", b"Content-Length", b"Authorization", b"X-Request-Id"):
        assert REQUEST_KINDS(name) == REQUEST_FIELDS[name.lower()]
    assert RESPONSE_KINDS(b"Transfer-Encoding") == TRANSFER_ENCODING
    assert RESPONSE_KINDS(b"Access-Control-Allow-Origin") == DROP  # CORS is off
    assert RESPONSE_KINDS(b"Content-Type") == PASS
