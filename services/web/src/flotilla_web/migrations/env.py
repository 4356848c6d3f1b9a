from flotilla_kit.migrations import run_env
from flotilla_web.adapters.tables import metadata

run_env(metadata)
