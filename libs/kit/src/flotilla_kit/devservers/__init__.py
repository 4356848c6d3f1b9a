"""Real servers (PostgreSQL, later NATS and Valkey) started from pip wheels, for local runs
and tests."""

from flotilla_kit.devservers.ports import free_port
from flotilla_kit.devservers.postgres import EmbeddedPostgres

__all__ = ["EmbeddedPostgres", "free_port"]
