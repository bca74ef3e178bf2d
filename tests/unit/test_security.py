"""Token verification refuses every classic JWT attack with a reason, keeps
tokens of a rotated-out key valid until they expire, and role checks order
roles as documented. Pure: keys in a tmp folder, no server."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from base.settings import Settings
from infra.security import (
    PLATFORM_SCOPE,
    ROLES,
    Keyring,
    Principal,
    PublicKeys,
    TokenIssuer,
    TokenVerifier,
    Unauthenticated,
    bearer_token,
)


@pytest.fixture
def keys(tmp_path):
    settings = Settings(state_dir=str(tmp_path))
    keyring = Keyring.of(settings)
    keyring.signing_key()
    return settings, keyring, TokenIssuer(keyring, settings), TokenVerifier.of(settings)


def refused(verifier: TokenVerifier, token: str) -> str:
    with pytest.raises(Unauthenticated) as err:
        verifier.verify(token)
    return str(err.value)


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_a_token_issued_by_the_keyring_verifies_to_its_principal(keys):
    settings, _, issuer, verifier = keys
    principal = verifier.verify(issuer.access_token("user-1", "user", [PLATFORM_SCOPE]))
    assert (principal.id, principal.kind, principal.scopes) == ("user-1", "user", frozenset({PLATFORM_SCOPE}))


def test_alg_none_is_refused(keys):
    settings, keyring, issuer, verifier = keys
    claims = jwt.decode(issuer.access_token("u"), options={"verify_signature": False})
    token = jwt.encode(claims, None, algorithm="none", headers={"kid": keyring.kids()[0]})
    assert "algorithm 'none' is not accepted" in refused(verifier, token)


def test_hs256_signed_with_the_public_key_is_refused(keys):
    settings, keyring, issuer, verifier = keys
    kid = keyring.kids()[0] if keyring.kids() else keyring.signing_key()[0]
    public_pem = keyring.public_key(kid).public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    claims = jwt.decode(issuer.access_token("u"), options={"verify_signature": False})
    header = _b64({"alg": "HS256", "typ": "JWT", "kid": kid})
    payload = _b64(claims)
    import hashlib
    import hmac

    signature = base64.urlsafe_b64encode(hmac.new(public_pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()).rstrip(
        b"="
    )
    assert "algorithm 'HS256' is not accepted" in refused(verifier, f"{header}.{payload}.{signature.decode()}")


def test_expired_and_not_yet_valid_tokens_are_refused(keys):
    _, _, issuer, verifier = keys
    assert refused(verifier, issuer.access_token("u", ttl_s=-60)) == "token expired"
    assert refused(verifier, issuer.access_token("u", now=time.time() + 3600)) == "token not valid yet"


def test_wrong_audience_or_issuer_is_refused(keys):
    settings, keyring, _, verifier = keys
    other_aud = TokenIssuer(keyring, Settings(state_dir=settings.state_dir, jwt_audience="someone-else"))
    other_iss = TokenIssuer(keyring, Settings(state_dir=settings.state_dir, jwt_issuer="evil-idp"))
    assert refused(verifier, other_aud.access_token("u")) == "token audience is not this platform"
    assert refused(verifier, other_iss.access_token("u")) == "token issuer is not trusted"


def test_an_unknown_key_id_is_refused(keys, tmp_path):
    settings, _, _, verifier = keys
    stranger = TokenIssuer(Keyring(tmp_path / "other-keys"), settings)
    assert "unknown signing key id" in refused(verifier, stranger.access_token("u"))


def test_a_tampered_payload_is_refused(keys):
    _, _, issuer, verifier = keys
    header, payload, signature = issuer.access_token("user-1").split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = "admin"
    assert "invalid token" in refused(verifier, f"{header}.{_b64(claims)}.{signature}")


def test_tokens_of_the_previous_key_stay_valid_after_rotation_and_new_ones_use_the_new_kid(keys):
    _, keyring, issuer, verifier = keys
    old = issuer.access_token("u")
    new_kid = keyring.rotate()
    fresh = issuer.access_token("u")
    assert jwt.get_unverified_header(fresh)["kid"] == new_kid != jwt.get_unverified_header(old)["kid"]
    assert verifier.verify(old).id == verifier.verify(fresh).id == "u"


def test_a_removed_key_stops_verifying_in_a_running_verifier_even_for_cached_tokens(keys):
    settings, keyring, issuer, verifier = keys
    old_kid = keyring.signing_key()[0]
    old = issuer.access_token("u")
    assert verifier.verify(old).id == "u"  # verified once: cached
    new_kid = keyring.rotate()
    assert verifier.verify(issuer.access_token("u")).id == "u"  # a key rotated in a moment ago verifies
    assert keyring.remove(old_kid) and not keyring.remove(old_kid)
    time.sleep(PublicKeys.RECHECK_S + 0.1)
    assert refused(verifier, old) == f"unknown signing key id {old_kid!r}"
    assert keyring.kids() == [new_kid] and keyring.signing_key()[0] == new_kid


def test_a_verifier_reads_public_keys_only(keys, tmp_path):
    settings, keyring, issuer, _ = keys
    token = issuer.access_token("u")
    # The verifier's folder alone (as mounted into a gRPC pod): the private keys are not needed.
    mounted = tmp_path / "mounted-public"
    mounted.mkdir()
    for path in Path(settings.public_keys_dir).glob("*.pem"):
        assert b"PRIVATE" not in path.read_bytes()
        (mounted / path.name).write_bytes(path.read_bytes())
    assert TokenVerifier(PublicKeys(mounted), settings).verify(token).id == "u"
    # A private key where public ones belong is refused, not used.
    (mounted / "k-private.pem").write_bytes((Path(settings.keys_dir) / f"{keyring.kids()[0]}.pem").read_bytes())
    with pytest.raises(ValueError, match="public keys only"):
        TokenVerifier(PublicKeys(mounted), settings).verify(token)


def test_a_cached_verification_still_expires(keys):
    _, _, issuer, verifier = keys
    verifier.leeway_s = 0
    # exp is in whole seconds: 3 s leaves a loaded machine time to verify before it, and the sleep passes it.
    token = issuer.access_token("u", ttl_s=3)
    assert verifier.verify(token).id == "u"
    time.sleep(3.1)
    assert refused(verifier, token) == "token expired"


@pytest.mark.parametrize(
    "metadata, reason",
    [
        ((), "missing bearer token"),
        ((("authorization", "Basic abc"),), "must be 'Bearer <token>'"),
        ((("authorization", "Bearer "),), "must be"),
    ],
)
def test_bearer_metadata_must_be_present_and_well_formed(metadata, reason):
    with pytest.raises(Unauthenticated) as err:
        bearer_token(metadata)
    assert reason in str(err.value)


def test_roles_are_ordered_weakest_first():
    assert ROLES == ("viewer", "agent", "admin", "owner")
    assert Principal("p", "user").scopes == frozenset()
