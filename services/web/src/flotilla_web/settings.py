"""Settings of the web service (environment variables `FLOTILLA_*`).

Every default works on a laptop under `flotilla up`: the gateway on 127.0.0.1:8443, its
certificate signed by the dev CA that `FLOTILLA_TLS_CA_FILE` names for every service.
"""

from __future__ import annotations

from pathlib import Path
from typing import Self

from pydantic import Field, model_validator

from flotilla_kit.settings import ServiceSettings

__all__ = ["WebSettings"]


class WebSettings(ServiceSettings):
    service_name: str = Field(default="web", description="Name in logs and metrics.")
    gateway_url: str = Field(
        default="https://127.0.0.1:8443",
        description="Base URL of the gateway: every API call of the pages goes through it, "
        "with the user's access token, like any other client's.",
    )
    gateway_ca_file: Path | None = Field(
        default=None,
        description="PEM CA bundle that signs the gateway's certificate; empty: the CA of "
        "FLOTILLA_TLS_CA_FILE (the dev CA under `flotilla up`), else the system's.",
    )
    gateway_timeout_s: float = Field(
        default=15.0,
        gt=0,
        le=120,
        description="Deadline of one API call through the gateway (a transfer or an order "
        "waits a few seconds for its outcome before it is answered).",
    )
    gateway_connect_timeout_s: float = Field(
        default=2.0, gt=0, le=60, description="Deadline of opening a connection to the gateway."
    )
    gateway_max_connections: int = Field(
        default=50, ge=1, le=1000, description="Connections to the gateway kept per instance."
    )
    session_idle_timeout_s: float = Field(
        default=1800.0,
        gt=0,
        description="A session unused this long is over (the user logs in again).",
    )
    session_absolute_timeout_s: float = Field(
        default=43_200.0,
        gt=0,
        description="A session is over this long after its login, however much it is used.",
    )
    session_touch_s: float = Field(
        default=60.0,
        ge=0,
        description="How stale a session's last-use time may get before a request writes it "
        "again (the idle timeout is this precise; 0 writes on every request).",
    )
    session_sweep_s: float = Field(
        default=300.0,
        gt=0,
        description="How often each instance deletes the sessions that are over.",
    )
    refresh_before_s: float = Field(
        default=60.0,
        ge=0,
        description="The access token is renewed (the refresh grant, which rotates the "
        "refresh token) once it has less than this left.",
    )
    cookie_secure: bool = Field(
        default=True,
        description="Cookies carry `Secure` and the `__Host-` prefix (the browser sends them "
        "over HTTPS only). Set false only to try the pages over plain HTTP on localhost.",
    )
    static_max_age_s: int = Field(
        default=3600, ge=0, description="`Cache-Control: max-age` of the files under /static."
    )
    # What the operator console reads of the running system (entrypoints/console*).
    nats_url: str = Field(
        default="",
        description="NATS server of the system, for the console's dead letters; empty: the "
        "console says they are not available here.",
    )
    scale_requests_dir: Path | None = Field(
        default=None,
        description="Where the supervisor of `flotilla up` takes scale requests; empty: "
        "var_dir/run/scale.",
    )

    @property
    def scale_requests_path(self) -> Path:
        if self.scale_requests_dir is not None:
            return self.scale_requests_dir
        return self.var_dir / "run" / "scale"

    @property
    def gateway_ca_path(self) -> Path | None:
        return self.gateway_ca_file if self.gateway_ca_file is not None else self.tls.ca_file

    @model_validator(mode="after")
    def _sane(self) -> Self:
        if not self.gateway_url.startswith(("https://", "http://")):
            raise ValueError("gateway_url must start with https:// (or http://)")
        if self.session_absolute_timeout_s < self.session_idle_timeout_s:
            raise ValueError("session_absolute_timeout_s must not be shorter than the idle one")
        return self
