"""Real servers (PostgreSQL, Valkey; later NATS) started from pip wheels, for local runs
and tests."""

from flotilla_kit.devservers.ports import free_port
from flotilla_kit.devservers.postgres import EmbeddedPostgres
from flotilla_kit.devservers.processes import die_with_parent
from flotilla_kit.devservers.valkey import EmbeddedValkey

__all__ = ["EmbeddedPostgres", "EmbeddedValkey", "die_with_parent", "free_port"]
