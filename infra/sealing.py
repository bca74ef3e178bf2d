"""The one sealing mechanism of the platform: AES-256-GCM keys in a folder seal a
secret that must be stored (a password hash, a TOTP secret, a tenant's page
access token) so it may travel in commands and events and sit in a read store
revealing nothing, and cannot be altered or moved to another owner (the context —
principal and purpose, tenant and page — is authenticated data). It never logs a
value, sealed or clear.

Keys live in a folder, one `<kid>.key` each (32 random bytes, base64): the
newest kid seals, every key present unseals, so adding a key (`rotate`) never
strands older sealed values. Each user of it keeps its own folder (the Identity
hub's, the tenants' credentials'), so a process holds only the keys it needs.
Production: mount the folder from a secret store, with every replica seeing the
same keys, and never delete a key while values sealed with it may be in the log.
Sealed format: `sealed.v1.<kid>.<base64url(nonce ‖ ciphertext ‖ tag)>`."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import time
import uuid
from pathlib import Path

import structlog
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from base.settings import Settings
from schemas.contracts import SEALED_PREFIX

log = structlog.get_logger(__name__)

_NONCE = 12


class SealError(Exception):
    """A sealed value cannot be opened: wrong key, tampered, or another context."""


class Sealer:
    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self._keys: dict[str, AESGCM] = {}
        self._fingerprint_key = b""

    def _load(self) -> None:
        keys: dict[str, AESGCM] = {}
        first_raw = b""
        if self.folder.is_dir():
            for path in sorted(self.folder.glob("*.key")):
                if path.stat().st_mode & 0o077:
                    log.warning("sealing key readable by others than its owner", path=str(path))
                try:
                    raw = base64.urlsafe_b64decode(path.read_bytes().strip())
                except (binascii.Error, ValueError):
                    raise SealError(f"{path} is not a base64 sealing key") from None
                if len(raw) != 32:
                    raise SealError(f"{path} must hold a 256-bit key, not {len(raw) * 8} bits")
                keys[path.stem] = AESGCM(raw)
                first_raw = first_raw or raw
        self._keys = keys
        # The oldest key (never deleted while anything sealed with it lives) keys the
        # fingerprints, so a fingerprint stays the same across rotations.
        self._fingerprint_key = hmac.new(first_raw, b"poseidon fingerprint v1", hashlib.sha256).digest() if first_raw else b""

    def ensure_key(self) -> str:
        """The sealing kid, creating the first key when the folder has none."""
        if not self._keys:
            self._load()
        if not self._keys:
            return self.rotate()
        return max(self._keys)

    def rotate(self) -> str:
        """Add a new key (it seals from now on); returns its kid."""
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        kid = f"s{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:6]}"
        fd = os.open(self.folder / f"{kid}.key", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(base64.urlsafe_b64encode(AESGCM.generate_key(bit_length=256)))
        self._load()
        return kid

    def fingerprint(self, value: str, context: str) -> str:
        """A keyed, stable, one-way name for `value` (a client address) in `context`:
        32 hex characters that match for equal values and reveal nothing without the
        key — unlike a plain hash, which the 2^32 IPv4 addresses would undo in seconds."""
        self.ensure_key()
        return hmac.new(self._fingerprint_key, f"{context}|{value}".encode(), hashlib.sha256).hexdigest()[:32]

    def seal(self, plaintext: bytes, context: str) -> str:
        kid = self.ensure_key()
        nonce = os.urandom(_NONCE)
        sealed = self._keys[kid].encrypt(nonce, plaintext, f"{kid}|{context}".encode())
        return f"{SEALED_PREFIX}{kid}.{base64.urlsafe_b64encode(nonce + sealed).decode().rstrip('=')}"

    def unseal(self, sealed: str, context: str) -> bytes:
        if not sealed.startswith(SEALED_PREFIX):
            raise SealError("not a sealed value")
        kid, _, body = sealed[len(SEALED_PREFIX) :].partition(".")
        if kid not in self._keys:
            self._load()  # sealed by a key added since (rotation, another replica)
        key = self._keys.get(kid)
        if key is None:
            raise SealError(f"unknown sealing key {kid!r}")
        try:
            data = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            return key.decrypt(data[:_NONCE], data[_NONCE:], f"{kid}|{context}".encode())
        except (InvalidTag, binascii.Error, ValueError):
            raise SealError("sealed value does not open with its key in this context") from None


CREDENTIAL_KEYS_FOLDER = "credential-sealing-keys"


def credential_keys_dir(settings: Settings) -> Path:
    """The tenants' credentials' keys (page tokens, the connect flow's state): the
    Tenant gRPC service seals with them, the spokes that use the credentials unseal."""
    return Path(settings.credential_sealing_keys_dir or Path(settings.state_dir) / CREDENTIAL_KEYS_FOLDER)
