"""Imported last by the forking parent (`flotilla_cli.launcher.forking`), after every service:
what the parent loaded lives as long as its children, so it is collected once and then
frozen out of the garbage collector's sight. A child that ran a full collection would
otherwise walk (and so write to, and copy) every page of those objects."""

import gc

gc.collect()
gc.freeze()
