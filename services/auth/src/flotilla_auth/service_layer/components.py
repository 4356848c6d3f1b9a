"""The collaborators the entrypoints hand to the use cases; `bootstrap` builds them once."""

from __future__ import annotations

from dataclasses import dataclass

from flotilla_auth.domain.token_policy import TokenPolicy
from flotilla_auth.service_layer.errors import SigningKeyUnavailable
from flotilla_auth.service_layer.ports import (
    Clock,
    KeyMaterial,
    PasswordHasher,
    TokenSigner,
    UnitOfWorkFactory,
)

__all__ = ["Components"]


@dataclass(slots=True)
class Components:
    uow: UnitOfWorkFactory
    passwords: PasswordHasher
    keys: KeyMaterial
    policy: TokenPolicy
    clock: Clock
    # Set at start-up once the active key is ensured and opened; None means not ready.
    active_signer: TokenSigner | None = None

    @property
    def signer(self) -> TokenSigner:
        if self.active_signer is None:
            raise SigningKeyUnavailable("no active signing key is loaded")
        return self.active_signer
