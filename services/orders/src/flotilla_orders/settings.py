"""Settings of the orders service (environment variables `FLOTILLA_*`)."""

from __future__ import annotations

from typing import Self

from pydantic import Field, field_validator, model_validator

from flotilla_kit.settings import FaultSettings, LeaseSettings
from flotilla_kit.sharding import shard_of
from flotilla_orders.service_layer.faults import FaultPoint

__all__ = ["OrdersSettings"]


def _host_port(target: str) -> bool:
    host, _, port = target.rpartition(":")
    return bool(host) and port.isdigit()


def _base_url(url: str) -> bool:
    return url.startswith(("https://", "http://")) and len(url) > len("https://")


class OrdersSettings(FaultSettings, LeaseSettings):
    fault_service = "orders"
    fault_points = FaultPoint

    service_name: str = Field(default="orders", description="Name in logs and metrics.")
    inventory_targets: list[str] = Field(
        default_factory=list,
        description='gRPC targets ("host:port") of the inventory instances, as JSON: '
        '["127.0.0.1:7301", "127.0.0.1:7302"]; a call that gets no answer moves on.',
    )
    payments_urls: list[str] = Field(
        default_factory=list,
        description="Base URLs of the payments instances (JSON list), tried in turn.",
    )
    accounts_shards: dict[int, list[str]] = Field(
        default_factory=dict,
        description="Ledger shard -> base URLs of its accounts instances, as JSON: "
        '{"0": ["https://127.0.0.1:8101"], "1": [...]}; an account id names its shard.',
    )
    auth_token_urls: list[str] = Field(
        default_factory=list,
        description="Token endpoints of the auth service, tried in order, for this service's "
        "own token (client `orders`, proven with the instance's TLS certificate and key).",
    )
    shop_account: str = Field(
        default="",
        max_length=64,
        description="The shop's account, where payments go and refunds come from "
        "(`acc_<shard>_<hex>`); needed once payments_urls is set.",
    )
    shop_owner: str = Field(
        default="shop",
        min_length=1,
        max_length=128,
        description="The owner of the shop's account: refunds are paid on its behalf.",
    )
    reservation_hold_s: int = Field(
        default=120,
        ge=1,
        le=86_400,
        description="How long inventory holds an order's stock while it is paid for.",
    )
    reserve_within_s: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="How long an unanswered Reserve is retried before the order is "
        "cancelled (inventory-unavailable).",
    )
    answer_within_s: float = Field(
        default=2.0,
        ge=0,
        le=60,
        description="How long POST /orders waits for the saga before answering (always 202, "
        "with the order as it stands; 0 answers at once).",
    )
    rpc_timeout_s: float = Field(
        default=2.0, gt=0, le=60, description="Deadline of each gRPC call to inventory."
    )
    http_timeout_s: float = Field(
        default=3.0, gt=0, le=60, description="Deadline of each call to an accounts shard."
    )
    payments_timeout_s: float = Field(
        default=8.0,
        gt=0,
        le=120,
        description="Deadline of each call to payments (it may wait up to its own "
        "FLOTILLA_ANSWER_WITHIN_S, 5 s by default, before answering).",
    )
    max_payment_attempts: int = Field(
        default=3,
        ge=1,
        le=100,
        description="Payment attempts aborted by payments (503 transfer-aborted, nothing "
        "moved) before the order is cancelled (payment-unavailable).",
    )
    nats_url: str = Field(
        default="nats://127.0.0.1:4222", description="The NATS server (JetStream) for events."
    )
    history_consumers: bool = Field(
        default=True,
        description="Run the order history's event consumers in this instance (they wait "
        "for NATS when it is not there; the rest of the service works meanwhile).",
    )

    @field_validator("inventory_targets")
    @classmethod
    def _targets_are_host_port(cls, targets: list[str]) -> list[str]:
        for target in targets:
            if not _host_port(target):
                raise ValueError(f"inventory target {target!r} is not host:port")
        return targets

    @field_validator("payments_urls", "auth_token_urls")
    @classmethod
    def _urls(cls, urls: list[str]) -> list[str]:
        for url in urls:
            if not _base_url(url):
                raise ValueError(f"{url!r} is not an http(s) URL")
        return urls

    @field_validator("accounts_shards")
    @classmethod
    def _shards_have_urls(cls, shards: dict[int, list[str]]) -> dict[int, list[str]]:
        for shard, urls in shards.items():
            if not 0 <= shard <= 999:
                raise ValueError(f"shard {shard} is out of range (0-999)")
            if not urls:
                raise ValueError(f"shard {shard} has no URLs")
            for url in urls:
                if not _base_url(url):
                    raise ValueError(f"{url!r} of shard {shard} is not an http(s) URL")
        return shards

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        longest_call = max(self.payments_timeout_s, self.rpc_timeout_s, self.http_timeout_s)
        if self.lease_s <= longest_call:
            # Otherwise recovery elsewhere could take over a saga in the middle of a call.
            raise ValueError(
                f"lease_s ({self.lease_s}) must be longer than the longest call deadline "
                f"({longest_call})"
            )
        if self.payments_urls and (
            not self.shop_account.startswith("acc_") or shard_of(self.shop_account) is None
        ):
            raise ValueError(
                "payments need the shop's account: set FLOTILLA_SHOP_ACCOUNT to an "
                "account id (acc_<shard>_<hex>)"
            )
        remote = self.inventory_targets or self.payments_urls or self.accounts_shards
        tls = self.tls
        if remote and (tls.cert_file is None or tls.key_file is None or tls.ca_file is None):
            raise ValueError(
                "calling inventory, payments or accounts needs TLS: set "
                "FLOTILLA_TLS_CERT_FILE, FLOTILLA_TLS_KEY_FILE and FLOTILLA_TLS_CA_FILE"
            )
        return self
