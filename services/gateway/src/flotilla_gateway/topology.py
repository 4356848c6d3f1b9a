"""Where the gateway learns its upstreams: the launcher's topology file, watched.

The launcher replaces the file atomically, so a new inode, size or mtime means a new
version. A version that cannot be read or is inconsistent is skipped (and logged); the
gateway keeps routing to what it knew. `TopologySource` is what the gateway needs of any
source (this file, or DNS in `discovery.py`): the change since the last look.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from flotilla_kit.logs import get_logger
from flotilla_kit.topology import Topology

__all__ = ["InstanceRef", "TopologyChange", "TopologySource", "TopologyWatcher", "diff"]

_log = get_logger("flotilla.gateway.topology")


@dataclass(frozen=True, slots=True)
class InstanceRef:
    service: str
    name: str
    url: str
    # The shard the instance serves, for sharded services.
    shard: int | None = None
    # The name its certificate is checked against; None: the URL's host.
    tls_name: str | None = None

    def sort_key(self) -> tuple[str, str, str, int, str]:
        shard = -1 if self.shard is None else self.shard
        return (self.service, self.name, self.url, shard, self.tls_name or "")


@dataclass(frozen=True, slots=True)
class TopologyChange:
    """Instances to take out and to add; an instance whose URL, shard or TLS name changed
    is in both."""

    added: tuple[InstanceRef, ...] = ()
    removed: tuple[InstanceRef, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.added or self.removed)


def _refs(topology: Topology) -> set[InstanceRef]:
    return {
        InstanceRef(service, instance.name, instance.url, instance.shard, instance.tls_name)
        for service, instances in topology.services.items()
        for instance in instances
    }


def diff(old: Topology, new: Topology) -> TopologyChange:
    before, after = _refs(old), _refs(new)
    return TopologyChange(
        added=tuple(sorted(after - before, key=InstanceRef.sort_key)),
        removed=tuple(sorted(before - after, key=InstanceRef.sort_key)),
    )


def _duplicate_names(topology: Topology) -> list[str]:
    duplicates: list[str] = []
    for service, instances in topology.services.items():
        seen: set[str] = set()
        for instance in instances:
            if instance.name in seen:
                duplicates.append(f"{service}/{instance.name}")
            seen.add(instance.name)
    return duplicates


class TopologySource(Protocol):
    """Where the instances come from; the gateway polls it and applies what changed."""

    @property
    def current(self) -> Topology:
        """The topology as of the last `poll()`."""
        ...

    def poll(self) -> TopologyChange | None:
        """The change since the last poll, or None when there is none. Never blocks."""
        ...


class TopologyWatcher:
    """Reads the topology file again whenever it was replaced or modified."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.current = Topology()
        self._stamp: tuple[int, int, int] | None = None
        self._missing_logged = False

    def poll(self) -> TopologyChange | None:
        """The change since the last poll, or None when there is none."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            if not self._missing_logged:
                _log.warning("topology file not found; no upstream yet", path=str(self.path))
                self._missing_logged = True
            return None
        except OSError as error:
            _log.warning("cannot stat topology file", path=str(self.path), error=repr(error))
            return None
        stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        if stamp == self._stamp:
            return None
        self._stamp = stamp
        try:
            new = Topology.read(self.path)
        except (OSError, ValueError) as error:  # pydantic's ValidationError is a ValueError
            _log.warning("ignoring unreadable topology", path=str(self.path), error=str(error))
            return None
        duplicates = _duplicate_names(new)
        if duplicates:
            _log.warning("ignoring topology with duplicate instance names", names=duplicates)
            return None
        change = diff(self.current, new)
        self.current = new
        return change or None
