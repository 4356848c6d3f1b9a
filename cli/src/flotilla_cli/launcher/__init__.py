"""What runs a system: `flotilla up` and `flotilla down` (`commands`), the plan of its
instances (`planning`), the supervisor that starts, restarts and watches them
(`supervisor`, forking them from a warm parent: `forking`, `warm_parent`), the files under
`var/` (`layout`, `state`), and the helpers other groups start or read a system with
(`processes`, `scratch_system`, `service_commands`, `demo_data`, `machine`)."""
