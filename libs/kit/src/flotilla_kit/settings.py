"""Settings shared by every service: one pydantic-settings model per service extends these.

Every field has a default that works on a laptop (`profile=dev`). Outside `dev`, a secret
that is empty or still a placeholder stops the service at start: a forgotten secret must
never reach production quietly.
"""

from __future__ import annotations

import copy
import enum
import socket
import sys
from pathlib import Path
from typing import Any, ClassVar, Literal, Self, TypeVar

from pydantic import (
    AliasChoices,
    BaseModel,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from flotilla_kit.faults import faults_of_service

__all__ = [
    "PLACEHOLDER_MARKERS",
    "FaultSettings",
    "InsecureSecretError",
    "LeaseSettings",
    "Profile",
    "ServiceSettings",
    "TlsSettings",
    "is_placeholder_secret",
    "load_settings",
]

Profile = Literal["dev", "test", "prod"]

# Substrings that mark a value as a placeholder someone forgot to replace.
PLACEHOLDER_MARKERS = ("change-me", "changeme", "placeholder", "insecure", "example", "todo", "xxx")


class InsecureSecretError(ValueError):
    """A secret is empty or a placeholder in a profile where that is not allowed."""


def is_placeholder_secret(value: str) -> bool:
    lowered = value.strip().lower()
    return not lowered or any(marker in lowered for marker in PLACEHOLDER_MARKERS)


class TlsSettings(BaseSettings):
    """Where a process finds its certificate, key and the CA that signs its peers."""

    model_config = SettingsConfigDict(env_prefix="FLOTILLA_TLS_", extra="ignore")

    cert_file: Path | None = Field(default=None, description="PEM certificate of this process.")
    key_file: Path | None = Field(default=None, description="PEM private key of this process.")
    ca_file: Path | None = Field(default=None, description="PEM CA bundle that signs peers.")
    require_client_cert: bool = Field(
        default=True, description="Servers refuse peers without a client certificate (mTLS)."
    )

    @property
    def enabled(self) -> bool:
        return self.cert_file is not None and self.key_file is not None


class LeaseSettings(BaseModel):
    """Fields of a service that drives work under leases and retries it (the orders saga,
    the payments 2PC coordinator; `flotilla_kit.recovery`): mixed into its settings model,
    read from `FLOTILLA_<FIELD>` like the rest."""

    retry_initial_s: float = Field(
        default=0.1,
        gt=0,
        le=60,
        description="First retry delay of a step (a saga step, a 2PC phase two); then doubling.",
    )
    retry_max_s: float = Field(
        default=5.0, gt=0, le=3600, description="Longest retry delay (full jitter below it)."
    )
    recovery_interval_s: float = Field(
        default=1.0,
        gt=0,
        le=3600,
        description="How often recovery looks for work whose driver stopped or gave up.",
    )
    lease_s: float = Field(
        default=10.0,
        gt=0,
        le=3600,
        description="How long a driver owns its work (an order's saga, a transfer) before "
        "recovery in any instance may take it over.",
    )

    @model_validator(mode="after")
    def _retry_delays_in_order(self) -> Self:
        if self.retry_max_s < self.retry_initial_s:
            raise ValueError("retry_max_s must not be shorter than retry_initial_s")
        return self


class ServiceSettings(BaseSettings):
    """Fields every service has. Environment variables are `FLOTILLA_<FIELD>`."""

    model_config = SettingsConfigDict(env_prefix="FLOTILLA_", extra="ignore")

    service_name: str = Field(default="service", description="Name in logs and metrics.")
    profile: Profile = Field(default="dev", description="dev, test or prod.")
    instance_id: str = Field(
        default="0",
        description="Which instance of the service this is; unique among its replicas (a "
        "payments coordinator's leases are its own). Unset outside the dev profile: the "
        "host name, which is the container's or the pod's.",
    )
    host: str = Field(default="127.0.0.1", description="Interface to listen on.")
    port: int = Field(default=8000, ge=0, le=65535, description="TCP port to listen on.")
    var_dir: Path = Field(default=Path("var"), description="Run-time state (databases, logs).")
    database_url: str = Field(
        default="",
        description="SQLAlchemy async URL; empty means a SQLite file under var_dir.",
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    jwks_urls: list[str] = Field(
        default_factory=list,
        description="JWKS endpoints of the auth service, tried in order.",
    )
    revocation_urls: list[str] = Field(
        default_factory=list,
        description="Endpoints listing revoked sessions (auth service), tried in order.",
    )
    revocation_refresh_s: float = Field(
        default=5.0, gt=0, description="How often the revoked sessions are fetched."
    )
    token_issuer: str = Field(default="flotilla-auth", description="Expected `iss` of tokens.")
    token_audience: str = Field(default="flotilla", description="Expected `aud` of tokens.")
    max_body_bytes: int = Field(default=1_048_576, gt=0, description="Largest request body.")
    drain_s: float = Field(
        default=3.0,
        ge=0,
        description="On SIGTERM, how long the instance keeps serving while `/readyz` answers "
        "503 `draining`, so load balancers stop sending before it stops accepting. SIGINT "
        "stops without it.",
    )
    tracing_enabled: bool = Field(
        default=True, description="Record spans (OpenTelemetry); off records nothing."
    )
    trace_sample_ratio: float = Field(
        default=0.05,
        ge=0,
        le=1,
        description="Share of new traces recorded (a caller's sampled flag is followed; "
        "failed requests are recorded whatever the ratio). A recorded request costs tens of "
        "microseconds per span; send a `traceparent` ending in -01 to trace one on demand.",
    )
    otlp_endpoint: str = Field(
        default="",
        validation_alias=AliasChoices("FLOTILLA_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"),
        description="OTLP/HTTP collector base URL (`/v1/traces` is added); empty: spans go "
        "to JSON lines under traces_dir.",
    )
    traces_dir: Path | None = Field(
        default=None, description="Where span files go without OTLP; empty: var_dir/traces."
    )
    trace_file_max_bytes: int = Field(
        default=8 * 2**20,
        ge=4096,
        description="Without OTLP: the size at which an instance's span file is set aside "
        "(as <name>.old.jsonl, replacing the previous one); spans on disk stay under twice it.",
    )
    trace_export_delay_s: float = Field(
        default=1.0, gt=0, le=60, description="Longest wait before queued spans are exported."
    )
    tls: TlsSettings = Field(default_factory=TlsSettings)

    @property
    def traces_path(self) -> Path:
        return self.traces_dir if self.traces_dir is not None else self.var_dir / "traces"

    @property
    def sqlalchemy_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.var_dir / (self.service_name + '.db')}"

    @model_validator(mode="after")
    def _instance_id_of_this_host(self) -> Self:
        # Replicas started from one definition (compose's `deploy.replicas`) share their
        # settings: "0" for all of them would make them release each other's leases.
        if "instance_id" not in self.model_fields_set and self.profile != "dev":
            self.instance_id = socket.gethostname()
        return self

    @model_validator(mode="after")
    def _refuse_placeholder_secrets(self) -> Self:
        if self.profile == "dev":
            return self
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr) and is_placeholder_secret(value.get_secret_value()):
                raise InsecureSecretError(
                    f"setting {name!r} is empty or a placeholder; set FLOTILLA_{name.upper()} "
                    f"to a real secret (profile {self.profile!r} does not allow placeholders)"
                )
        return self


def _faults_description(service: str, points: str) -> str:
    return (
        "Fault injection (profiles test and dev only): point -> probability that the "
        "process exits there at once (status 137); a point may be qualified as "
        f"'{service}:<point>', and other services' points are ignored. Points: {points}."
    )


class FaultSettings(ServiceSettings):
    """`ServiceSettings` with fault injection (`flotilla_kit.faults`): the `faults` field
    (`FLOTILLA_FAULTS`, refused outside the profiles test and dev), read for this service's
    points. A service's settings model names its points and the name that qualifies them
    in a system-wide value; the field's description lists the points:

        class OrdersSettings(FaultSettings, LeaseSettings):
            fault_service: ClassVar[str] = "orders"
            fault_points: ClassVar[type[enum.StrEnum]] = FaultPoint
    """

    fault_service: ClassVar[str]
    fault_points: ClassVar[type[enum.StrEnum]]

    faults: dict[str, float] = Field(
        default_factory=dict,
        description=_faults_description("<service>", "those the service names"),
    )

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        if not hasattr(cls, "fault_service") or not hasattr(cls, "fault_points"):
            raise TypeError(f"{cls.__name__} must name fault_service and fault_points")
        # The description (JSON schema, settings listings) lists this service's points.
        described = copy.copy(cls.__pydantic_fields__["faults"])
        points = ", ".join(p.value for p in cls.fault_points)
        described.description = _faults_description(cls.fault_service, points)
        cls.__pydantic_fields__ = {**cls.__pydantic_fields__, "faults": described}
        cls.model_rebuild(force=True)

    @field_validator("faults")
    @classmethod
    def _own_fault_points(cls, faults: dict[str, float]) -> dict[str, float]:
        return faults_of_service(faults, service=cls.fault_service, points=cls.fault_points)

    @model_validator(mode="after")
    def _faults_only_in_test_or_dev(self) -> Self:
        if self.faults and self.profile not in ("test", "dev"):
            raise ValueError(
                f"fault injection is refused in profile {self.profile!r} (only test and dev)"
            )
        return self


_Settings = TypeVar("_Settings", bound=BaseSettings)


def _env_prefix(model: type[BaseSettings], title: str) -> str:
    """The variable prefix of the model a validation error is about: `model`, or one of
    its nested settings models (TLS settings are read on their own, `FLOTILLA_TLS_*`)."""
    for candidate in (model, *(f.annotation for f in model.model_fields.values())):
        if (
            isinstance(candidate, type)
            and issubclass(candidate, BaseSettings)
            and candidate.__name__ == title
        ):
            return str(candidate.model_config.get("env_prefix", ""))
    return str(model.model_config.get("env_prefix", ""))


def load_settings(model: type[_Settings]) -> _Settings:
    """The settings of a command, from the environment; on a bad value, what is wrong on
    stderr and exit status 2 (no traceback: the operator needs the setting's name)."""
    try:
        return model()
    except ValidationError as error:
        prefix = _env_prefix(model, error.title)
        lines = [
            f"  {prefix}{'_'.join(str(part) for part in e['loc']).upper()}: {e['msg']}"
            if e["loc"]
            else f"  {e['msg']}"
            for e in error.errors()
        ]
        print("invalid settings:\n" + "\n".join(lines), file=sys.stderr)
    except InsecureSecretError as error:
        print(f"invalid settings: {error}", file=sys.stderr)
    raise SystemExit(2)
