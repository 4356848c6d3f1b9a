"""Where the instances of each service listen: the launcher writes it, the gateway reads it.

Locally this is `var/run/topology.json`, rewritten atomically whenever instances are added
or removed. In Kubernetes the gateway resolves headless Services instead.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from pydantic import BaseModel, Field

__all__ = ["Instance", "Topology"]


class Instance(BaseModel):
    name: str = Field(description="Instance name, e.g. accounts-0.")
    url: str = Field(description="Base URL, e.g. https://127.0.0.1:41234.")
    shard: int | None = Field(
        default=None, description="For sharded services: the shard this instance serves."
    )
    tls_name: str | None = Field(
        default=None,
        description=(
            "Name the instance's certificate is checked against (and sent as SNI); None: "
            "the URL's host. DNS discovery sets the Service name, since URLs are pod IPs."
        ),
    )


class Topology(BaseModel):
    services: dict[str, list[Instance]] = Field(default_factory=dict)

    @classmethod
    def read(cls, path: Path) -> Topology:
        return cls.model_validate_json(path.read_bytes())

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".topology-")
        with os.fdopen(fd, "w") as handle:
            handle.write(self.model_dump_json(indent=2))
        os.replace(tmp, path)
