"""The collaborators the entrypoints hand to the use cases; `bootstrap` builds them once."""

from __future__ import annotations

from dataclasses import dataclass

from flotilla_auth.domain.login_protection import LoginProtection
from flotilla_auth.domain.password_policy import PasswordPolicy
from flotilla_auth.domain.signing_keys import KeySchedule
from flotilla_auth.domain.token_policy import TokenPolicy
from flotilla_auth.service_layer.errors import SigningKeyUnavailable
from flotilla_auth.service_layer.ports import (
    ClientAssertionVerifier,
    KeyMaterial,
    PasswordHasher,
    TokenSigner,
    UnitOfWorkFactory,
)
from flotilla_kit.clock import Clock

__all__ = ["Components"]


@dataclass(slots=True)
class Components:
    uow: UnitOfWorkFactory
    passwords: PasswordHasher
    password_policy: PasswordPolicy
    keys: KeyMaterial
    key_schedule: KeySchedule
    policy: TokenPolicy
    protection: LoginProtection
    client_assertions: ClientAssertionVerifier
    clock: Clock
    # Who this process is in the audit trail when it acts on its own (key rotation).
    system_actor: str = "system"
    # Set at start-up once the active key is ensured and opened, and replaced when the
    # rotation timer finds another key active; None means not ready.
    active_signer: TokenSigner | None = None

    @property
    def signer(self) -> TokenSigner:
        if self.active_signer is None:
            raise SigningKeyUnavailable("no active signing key is loaded")
        return self.active_signer
