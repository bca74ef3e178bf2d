"""Sealing of the identity secrets that must be stored — argon2id password
hashes and TOTP shared secrets — with AES-256-GCM keys only the Identity gRPC
service holds (the platform's one mechanism, `infra/sealing.py`; this module
names the Identity hub's key folder and contexts). A sealed value may travel in
commands and events and sit in the read store: without the key it reveals
nothing and cannot be altered or moved to another principal (the principal id
and purpose are authenticated data).

Default folder: `<POSEIDON_STATE_DIR>/identity-sealing-keys` (created 0700 with a
first key 0600 on first use)."""

from __future__ import annotations

from pathlib import Path

from base.settings import Settings
from infra.sealing import Sealer, SealError

__all__ = ["FOLDER_NAME", "Sealer", "SealError", "password_context", "sealing_keys_dir", "totp_context"]

FOLDER_NAME = "identity-sealing-keys"


def sealing_keys_dir(settings: Settings) -> Path:
    return Path(settings.identity_sealing_keys_dir or Path(settings.state_dir) / FOLDER_NAME)


def password_context(principal_id: str) -> str:
    return f"{principal_id}/password"


def totp_context(principal_id: str, enrollment_id: str) -> str:
    return f"{principal_id}/totp/{enrollment_id}"
