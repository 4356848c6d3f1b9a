"""Where a customer's accounts live: shared by the gateway (routing), the accounts
service (placement) and payments (which shard to ask).

A customer's accounts all live on their home shard, chosen by a hash of their id, so
"my accounts" is one shard's query. An account id names its shard (`acc_<shard>_<hex>`),
so anything holding an id can route to it without a lookup.
"""

from __future__ import annotations

import hashlib

__all__ = ["home_shard", "shard_of"]


def home_shard(owner_id: str, shards: int) -> int:
    if shards < 1:
        raise ValueError("there must be at least one shard")
    digest = hashlib.sha256(owner_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") % shards


def shard_of(account_id: str) -> int | None:
    """The shard encoded in an account id, or None when the id is not one of ours."""
    prefix, _, rest = account_id.partition("_")
    shard, _, tail = rest.partition("_")
    plain_number = shard.isascii() and shard.isdigit() and (shard == "0" or shard[0] != "0")
    if prefix not in ("acc", "sys") or not plain_number or not tail or len(shard) > 3:
        return None  # one spelling per shard: no "²", no leading zeros
    return int(shard)
