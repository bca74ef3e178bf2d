"""The Identity service's secret handling without a server: sealing (AES-256-GCM
keys in a folder, bound to principal and purpose, rotation), argon2id password
hashes, RFC 6238 TOTP steps and the refresh-token format."""

from __future__ import annotations

import base64
import stat
import time
import uuid

import pyotp
import pytest

from base.settings import Settings
from hubs.identity.credentials import (
    TOTP_INTERVAL,
    RefreshToken,
    hash_password,
    password_problem,
    provisioning_uri,
    totp_step,
    verify_password,
)
from hubs.identity.sealing import FOLDER_NAME, Sealer, SealError, password_context, sealing_keys_dir, totp_context
from schemas.contracts import SEALED_PREFIX

PRINCIPAL = str(uuid.uuid4())


@pytest.fixture
def sealer(tmp_path):
    return Sealer(tmp_path / "keys")


# -- sealing --------------------------------------------------------------


def test_a_sealed_value_opens_only_with_its_key_in_its_context(sealer, tmp_path):
    secret = b"$argon2id$v=19$m=19456,t=2,p=1$salt$hash"
    sealed = sealer.seal(secret, password_context(PRINCIPAL))
    assert sealed.startswith(SEALED_PREFIX) and b"argon2" not in sealed.encode()
    assert sealer.unseal(sealed, password_context(PRINCIPAL)) == secret
    with pytest.raises(SealError):
        sealer.unseal(sealed, password_context(str(uuid.uuid4())))  # moved to another principal
    with pytest.raises(SealError):
        sealer.unseal(sealed, totp_context(PRINCIPAL, str(uuid.uuid4())))  # used for another purpose
    with pytest.raises(SealError):
        Sealer(tmp_path / "other-keys").unseal(sealed, password_context(PRINCIPAL))


def test_a_tampered_sealed_value_does_not_open(sealer):
    sealed = sealer.seal(b"secret", "ctx")
    head, body = sealed.rsplit(".", 1)
    raw = bytearray(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    raw[-1] ^= 1
    with pytest.raises(SealError):
        sealer.unseal(f"{head}.{base64.urlsafe_b64encode(bytes(raw)).decode().rstrip('=')}", "ctx")
    with pytest.raises(SealError):
        sealer.unseal("not sealed at all", "ctx")


def test_sealing_twice_gives_different_values(sealer):
    assert sealer.seal(b"same", "ctx") != sealer.seal(b"same", "ctx")


def test_the_first_key_is_created_private_and_rotation_keeps_older_values_open(sealer):
    first = sealer.ensure_key()
    assert stat.S_IMODE(sealer.folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((sealer.folder / f"{first}.key").stat().st_mode) == 0o600
    old = sealer.seal(b"old", "ctx")
    time.sleep(1.01)  # kids sort by creation second
    second = sealer.rotate()
    new = sealer.seal(b"new", "ctx")
    assert second > first and f".{second}." in new and f".{first}." in old
    # Another process (a restarted service) opens both with the folder alone.
    fresh = Sealer(sealer.folder)
    assert (fresh.unseal(old, "ctx"), fresh.unseal(new, "ctx")) == (b"old", b"new")


def test_a_key_rotated_in_by_another_process_is_picked_up_to_unseal(sealer):
    sealer.ensure_key()
    other = Sealer(sealer.folder)
    time.sleep(1.01)
    other.rotate()
    assert sealer.unseal(other.seal(b"x", "ctx"), "ctx") == b"x"


def test_sealing_keys_live_under_the_state_dir():
    assert sealing_keys_dir(Settings(state_dir="/srv/state")).as_posix() == f"/srv/state/{FOLDER_NAME}"


# -- passwords ------------------------------------------------------------


def test_passwords_are_hashed_with_argon2id_and_verified():
    hashed = hash_password("correct horse battery")
    assert hashed.startswith("$argon2id$") and "m=19456,t=2,p=1" in hashed
    assert verify_password(hashed, "correct horse battery")
    assert not verify_password(hashed, "correct horse batterY")
    assert not verify_password("not a hash", "correct horse battery")


@pytest.mark.parametrize(
    "password, problem",
    [("short", "must be 12 to 256 characters"), ("x" * 257, "must be 12 to 256"), ("Alice@Example.com", "not be the login")],
)
def test_weak_passwords_are_refused_with_a_reason(password, problem):
    assert problem in password_problem(password, "alice@example.com")


def test_a_long_enough_password_is_accepted():
    assert password_problem("correct horse battery", "alice@example.com") is None


# -- TOTP -----------------------------------------------------------------


def test_a_totp_code_maps_to_its_time_step_with_one_step_of_drift():
    secret = pyotp.random_base32()
    totp = pyotp.TOTP(secret)
    now = time.time()
    step = int(now) // TOTP_INTERVAL
    assert totp_step(secret, totp.at(now), now) == step
    assert totp_step(secret, totp.at(now - TOTP_INTERVAL), now) == step - 1
    assert totp_step(secret, totp.at(now + TOTP_INTERVAL), now) == step + 1
    assert totp_step(secret, totp.at(now - 3 * TOTP_INTERVAL), now) is None
    assert totp_step(secret, "12345", now) is None and totp_step(secret, "abcdef", now) is None


def test_the_provisioning_uri_carries_secret_issuer_and_login():
    secret = pyotp.random_base32()
    parsed = pyotp.parse_uri(provisioning_uri(secret, "alice@example.com"))
    assert (parsed.secret, parsed.issuer, parsed.name) == (secret, "Poseidon", "alice@example.com")


# -- refresh tokens -------------------------------------------------------


def test_a_refresh_token_round_trips_and_rotation_keeps_its_family():
    token = RefreshToken.start(PRINCIPAL)
    parsed = RefreshToken.parse(token.encode())
    assert parsed == token and parsed.hash == token.hash
    successor = token.next()
    assert (successor.family_id, successor.generation, successor.family_proof) == (token.family_id, 1, token.family_proof)
    assert successor.hash != token.hash and successor.secret != token.secret
    assert len(token.hash) == len(token.family_proof) == 64
    assert token.family_secret.hex() not in repr(token) and token.family_proof not in token.encode()


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: "",
        lambda t: t[:-2],
        lambda t: t.replace("prt1_", "prt2_"),
        lambda t: t + "A",
        lambda t: t[:20] + "!" + t[21:],  # base64 would silently drop it
        lambda t: "prt1_" + base64.urlsafe_b64encode(b"x" * 100).decode(),  # right size, but not this encoder's spelling
    ],
)
def test_anything_but_a_well_formed_refresh_token_is_refused(mangle):
    token = RefreshToken.start(PRINCIPAL).encode()
    with pytest.raises(ValueError):
        RefreshToken.parse(mangle(token))
