"""Real servers (PostgreSQL, later NATS and Valkey) started from pip wheels, for local runs
and tests."""

from flotilla_kit.devservers.ports import free_port
from flotilla_kit.devservers.postgres import EmbeddedPostgres
from flotilla_kit.devservers.processes import die_with_parent

__all__ = ["EmbeddedPostgres", "die_with_parent", "free_port"]
