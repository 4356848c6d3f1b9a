"""Looking at a running system: `flotilla status`, `logs`, `trace`, `demo`, `audit`, `auth`,
`transfers` and `events` (all registered in `commands`), and Prometheus next to it."""
