"""`flotilla bench ...` (`commands`): one module (or package) per benchmark, and what they
share in `harness` (processes, wrk load, measurement), `figures` (sums and table cells) and
`system_processes` (a running system's processes and their CPU time)."""
