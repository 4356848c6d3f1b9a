"""`python -m flotilla_gateway`: the gateway's command line."""

from flotilla_gateway.entrypoints.cli import main

main()
