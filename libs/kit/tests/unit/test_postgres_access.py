"""Whether the server's system user may pass a folder is read from the folder's owner,
group and mode against that user's uid and groups, as the kernel decides it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from flotilla_kit.devservers.postgres import _Account, _closed_folder

USER = _Account(name="embedded_postgres", uid=1001, gid=1001, gids=(1001, 50))


def _status(mode: int, *, uid: int, gid: int) -> os.stat_result:
    return os.stat_result((mode, 0, 0, 1, uid, gid, 0, 0, 0, 0))


@pytest.mark.parametrize(
    ("mode", "uid", "gid", "passes"),
    [
        (0o700, 0, 0, False),  # root's home
        (0o711, 0, 0, True),  # others may pass
        (0o750, 0, 50, True),  # a supplementary group of the user may
        (0o750, 0, 1001, True),  # its own group may
        (0o750, 0, 60, False),  # a group it is not in
        (0o070, 1001, 1001, False),  # its owner's bits decide, not its group's
        (0o100, 1001, 0, True),
        (0o706, 0, 0, False),  # read and write, but no search
    ],
)
def test_the_owner_then_the_group_then_the_others_decide(
    mode: int, uid: int, gid: int, passes: bool
) -> None:
    assert USER.may(_status(mode, uid=uid, gid=gid), 1) is passes


def test_the_first_folder_it_cannot_pass_on_the_way_is_named(tmp_path: Path) -> None:
    caller = _Account(name="caller", uid=os.getuid(), gid=os.getgid(), gids=(os.getgid(),))
    inner = tmp_path / "open" / "closed" / "inner"
    inner.mkdir(parents=True)
    assert _closed_folder(inner, caller) is None
    (tmp_path / "open" / "closed").chmod(0o600)
    try:
        assert _closed_folder(inner, caller) == tmp_path / "open" / "closed"
    finally:
        (tmp_path / "open" / "closed").chmod(0o700)
