from __future__ import annotations

from collections import Counter

import pytest

from flotilla_kit.sharding import home_shard, shard_of


def test_home_shards_are_stable_and_spread() -> None:
    owners = [f"user-{n}" for n in range(1000)]
    shards = Counter(home_shard(owner, 4) for owner in owners)
    assert set(shards) == {0, 1, 2, 3}
    assert min(shards.values()) > 200  # roughly even
    assert home_shard("alice", 4) == home_shard("alice", 4)
    assert home_shard("alice", 1) == 0


def test_at_least_one_shard() -> None:
    with pytest.raises(ValueError, match="one shard"):
        home_shard("alice", 0)


@pytest.mark.parametrize(
    ("account_id", "shard"),
    [("acc_0_ab12", 0), ("acc_17_ff", 17), ("sys_2_cash_eur", 2), ("acc_x_1", None),
     ("acc_1_", None), ("usr_1_abc", None), ("", None), ("acc_1234_a", None),
     ("acc_²_a", None), ("acc_01_a", None), ("acc_10_a", 10)],
)  # fmt: skip
def test_account_ids_name_their_shard(account_id: str, shard: int | None) -> None:
    assert shard_of(account_id) == shard
