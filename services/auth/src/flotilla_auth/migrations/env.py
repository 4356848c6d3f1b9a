"""Alembic environment of the auth database; the kit does the work (online mode only)."""

from flotilla_auth.adapters.tables import metadata
from flotilla_kit.migrations import run_env

run_env(metadata)
