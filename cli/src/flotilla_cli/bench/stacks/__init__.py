"""`flotilla bench stacks`: the same minimal proxy job (GET with its Authorization header
to one upstream over a keep-alive pool; status, content-type and body back) on each
candidate server/client stack, measured side by side with the direct upstream, nginx and
the Flotilla gateway: the measured reason for the gateway's choice of server and client.

Each candidate is a module of this package, runnable on its own:
`python -m flotilla_cli.bench.stacks.<name> --port P --upstream URL`. The run itself is
`flotilla_cli.bench.stacks.runner`; the table and the JSON are `report`.
"""

from flotilla_cli.bench.stacks.rows import CANDIDATES, REFERENCES, ROWS, Candidate, Row

__all__ = ["CANDIDATES", "REFERENCES", "ROWS", "Candidate", "Row"]
