from flotilla_kit.migrations import run_env
from flotilla_payments.adapters.tables import metadata

run_env(metadata)
