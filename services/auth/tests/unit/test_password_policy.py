"""The password policy for passwords set by an administrator or a seed file."""

from __future__ import annotations

import pytest

from flotilla_auth.adapters.common_passwords import default_password_policy, load_common_passwords
from flotilla_auth.domain.password_policy import PasswordPolicy, PasswordRule

POLICY = default_password_policy()


@pytest.mark.parametrize(
    ("password", "username", "rule"),
    [
        ("velvet-harbour-lantern", "alice", None),
        ("a" * 11 + "!", "alice", None),  # exactly 12
        ("x" * 1024, "alice", None),
        ("eleven-char", "alice", PasswordRule.LENGTH),
        ("", "alice", PasswordRule.LENGTH),
        ("x" * 1025, "alice", PasswordRule.LENGTH),
        ("alicealicealice", "alicealicealice", PasswordRule.CONTAINS_USERNAME),
        ("my-ALICE-password", "alice", PasswordRule.CONTAINS_USERNAME),
        ("bobsledding-in-winter", "bo", None),  # a two-letter name is chance
        ("bo", "bo", PasswordRule.LENGTH),
        ("Password1234", "alice", PasswordRule.COMMON_PASSWORD),
        ("QWERTY123456", "alice", PasswordRule.COMMON_PASSWORD),
        ("correct horse battery staple", "alice", PasswordRule.COMMON_PASSWORD),
        ("1q2w3e4r5t6y", "alice", PasswordRule.COMMON_PASSWORD),
    ],
)
def test_rules(password: str, username: str, rule: PasswordRule | None) -> None:
    assert POLICY.violation(password, username) is rule


def test_the_bundled_list_is_a_few_hundred_real_entries() -> None:
    entries = load_common_passwords()
    assert len(entries) >= 300
    assert not any(entry.startswith("#") for entry in entries)
    long_enough = [entry for entry in entries if len(entry) >= 12]
    assert len(long_enough) >= 200  # the ones a 12-character minimum still lets through


def test_each_rule_explains_itself() -> None:
    assert "12" in PasswordRule.LENGTH.explain()
    assert PasswordPolicy.with_common([" Secret "]).common == frozenset({"secret"})
    assert "common" not in repr(POLICY)  # the list is not dumped into logs and tracebacks
