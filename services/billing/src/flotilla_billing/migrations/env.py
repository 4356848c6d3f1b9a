from flotilla_billing.adapters.tables import metadata
from flotilla_kit.migrations import run_env

run_env(metadata)
