"""Identity commands. Every one targets a principal (aggregate id = principal id)
in the platform tenant. None carries a secret in clear: passwords and TOTP
secrets arrive sealed, refresh tokens as SHA-256 hashes, TOTP codes as the time
step they were valid for (the gRPC service checked the code itself)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from schemas.contracts import Command


@dataclass(frozen=True)
class IdentityCommand(Command):
    hub: ClassVar[str] = "identity"


@dataclass(frozen=True)
class RegisterPrincipal(IdentityCommand):
    login: str
    kind: str
    sealed_password: str


@dataclass(frozen=True)
class RecordLoginSuccess(IdentityCommand):
    family_id: str
    family_proof: str
    token_hash: str
    expires_at: datetime
    totp_step: int = -1
    source: str = ""
    """Keyed fingerprint of the client address (hex); "" when unknown."""


@dataclass(frozen=True)
class RecordLoginFailure(IdentityCommand):
    reason: str
    source: str = ""


@dataclass(frozen=True)
class RotateRefreshToken(IdentityCommand):
    family_id: str
    family_proof: str
    presented_generation: int
    presented_hash: str
    new_hash: str
    expires_at: datetime


@dataclass(frozen=True)
class RevokeRefreshFamily(IdentityCommand):
    family_id: str
    reason: str = "revoked"


@dataclass(frozen=True)
class RevokeAllRefreshFamilies(IdentityCommand):
    reason: str = "revoked"


@dataclass(frozen=True)
class StartTotpEnrollment(IdentityCommand):
    enrollment_id: str
    sealed_secret: str


@dataclass(frozen=True)
class ConfirmTotp(IdentityCommand):
    enrollment_id: str
    step: int


@dataclass(frozen=True)
class ResetTotp(IdentityCommand):
    """An operator turns a principal's TOTP off (lost device), with the reason audited."""

    reason: str


COMMANDS = (
    RegisterPrincipal,
    RecordLoginSuccess,
    RecordLoginFailure,
    RotateRefreshToken,
    RevokeRefreshFamily,
    RevokeAllRefreshFamilies,
    StartTotpEnrollment,
    ConfirmTotp,
    ResetTotp,
)
