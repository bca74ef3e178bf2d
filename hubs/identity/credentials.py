"""The secret-handling primitives of the Identity service: argon2id password
hashing, RFC 6238 TOTP codes, and refresh tokens. No I/O; only the gRPC service
uses them, so no clear secret ever reaches a command, an event or a log.

Passwords: argon2id with OWASP's parameters (19 MiB, 2 passes, 1 lane): ~20 ms
and 19 MiB per hash, so a 2-core worker stays well under its memory budget; 12 to
256 characters, and not the login name.

Refresh tokens: `prt1_` + base64url(principal id ‖ family id ‖ generation ‖
family secret ‖ token secret), 256-bit random secrets. The hub records only
SHA-256 of the whole token (`hash`) and of the family secret (`family_proof`):
the family secret proves a presented token belongs to that session, so an older
generation is a reuse (the family is revoked) while a forged token is just
unknown. TOTP: 6 digits, 30-second steps, one step of clock drift either way."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
import uuid
from dataclasses import dataclass, field

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MIN_PASSWORD, MAX_PASSWORD = 12, 256
PASSWORD_HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
TOTP_DIGITS, TOTP_INTERVAL, TOTP_DRIFT_STEPS = 6, 30, 1
TOTP_ISSUER = "Poseidon"
REFRESH_PREFIX = "prt1_"
_REFRESH = struct.Struct(">16s16sI32s32s")


def password_problem(password: str, login: str) -> str | None:
    """Why a new password is refused, or None."""
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        return f"must be {MIN_PASSWORD} to {MAX_PASSWORD} characters"
    if password.strip().lower() == login:
        return "must not be the login name"
    return None


def hash_password(password: str) -> str:
    return PASSWORD_HASHER.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return PASSWORD_HASHER.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def new_totp_secret() -> str:
    return pyotp.random_base32()


def _totp(secret: str) -> pyotp.TOTP:
    return pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_INTERVAL)


def provisioning_uri(secret: str, login: str) -> str:
    return _totp(secret).provisioning_uri(name=login, issuer_name=TOTP_ISSUER)


def totp_step(secret: str, code: str, now: float) -> int | None:
    """The time step `code` is valid for at `now` (± the allowed drift), or None."""
    if len(code) != TOTP_DIGITS or not code.isdigit():
        return None
    totp = _totp(secret)
    current = int(now) // TOTP_INTERVAL
    for step in range(current - TOTP_DRIFT_STEPS, current + TOTP_DRIFT_STEPS + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class RefreshToken:
    principal_id: str
    family_id: str
    generation: int
    family_secret: bytes = field(repr=False)
    secret: bytes = field(repr=False)

    @classmethod
    def start(cls, principal_id: str) -> RefreshToken:
        """Generation 0 of a new family (a login)."""
        return cls(principal_id, str(uuid.uuid4()), 0, secrets.token_bytes(32), secrets.token_bytes(32))

    def next(self) -> RefreshToken:
        return RefreshToken(self.principal_id, self.family_id, self.generation + 1, self.family_secret, secrets.token_bytes(32))

    def encode(self) -> str:
        raw = _REFRESH.pack(
            uuid.UUID(self.principal_id).bytes, uuid.UUID(self.family_id).bytes, self.generation, self.family_secret, self.secret
        )
        return REFRESH_PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @property
    def hash(self) -> str:
        return sha256_hex(self.encode().encode())

    @property
    def family_proof(self) -> str:
        return sha256_hex(b"poseidon-refresh-family\x00" + self.family_secret)

    @classmethod
    def parse(cls, token: str) -> RefreshToken:
        """Raises ValueError for anything that is not a well-formed refresh token."""
        if not token.startswith(REFRESH_PREFIX):
            raise ValueError("not a refresh token")
        body = token[len(REFRESH_PREFIX) :]
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        except (ValueError, TypeError) as exc:
            raise ValueError("not a refresh token") from exc
        if len(raw) != _REFRESH.size:
            raise ValueError("not a refresh token")
        principal, family, generation, family_secret, secret = _REFRESH.unpack(raw)
        parsed = cls(str(uuid.UUID(bytes=principal)), str(uuid.UUID(bytes=family)), generation, family_secret, secret)
        if parsed.encode() != token:
            raise ValueError("not a refresh token")  # one spelling only: the hash is over the exact string
        return parsed
