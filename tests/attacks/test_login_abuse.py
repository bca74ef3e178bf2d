"""Abuse of the Identity hub's login over real gRPC (processor, projector and
server as subprocesses): locking someone else out, telling failures apart, and
flooding the password hash. Bounded: a handful of attempts per test."""

from __future__ import annotations

import time

import grpc
import pytest

from hubs.identity.aggregate import MAX_FAILED_LOGINS
from projections.identity.service import BAD_CREDENTIALS
from schemas.protos import identity_pb2 as pb
from schemas.protos import identity_pb2_grpc
from tests.harness import channel, eventually
from tests.integration.test_identity_hub import (  # noqa: F401  (fixture)
    PASSWORD,
    _names_with,
    from_address,
    identity,
    identity_topic,
    refused,
    register,
)

pytestmark = pytest.mark.integration

AREA = "login abuse"


async def test_failed_logins_lock_out_their_source_only_and_every_failure_is_answered_alike(identity, attacks):  # noqa: F811
    platform, stub = identity
    carol = (await register(stub, "carol@example.com")).principal_id
    attacker = from_address("203.0.113.66")
    attacks.tried(AREA, "lock someone out: failed logins from another address", "only that address is locked out", 1)
    attacks.tried(AREA, "tell answers apart: unknown login, wrong password, locked source", "one identical answer", 3)
    for _ in range(MAX_FAILED_LOGINS):
        guess = stub.Login(pb.LoginRequest(login="carol@example.com", password="guessing the password"), metadata=attacker)
        assert await refused(guess, grpc.StatusCode.UNAUTHENTICATED) == BAD_CREDENTIALS
    names = await eventually(lambda: _names_with(platform, carol, "PrincipalLockedOut", 1))
    assert names == ["PrincipalRegistered", *["LoginFailed"] * MAX_FAILED_LOGINS, "PrincipalLockedOut"]
    # The locked source gets the same answer with the right password as with a wrong one or an unknown login.
    right = stub.Login(pb.LoginRequest(login="carol@example.com", password=PASSWORD), metadata=attacker)
    assert await refused(right, grpc.StatusCode.UNAUTHENTICATED) == BAD_CREDENTIALS
    nobody = stub.Login(pb.LoginRequest(login="nobody-here@example.com", password=PASSWORD), metadata=attacker)
    assert await refused(nobody, grpc.StatusCode.UNAUTHENTICATED) == BAD_CREDENTIALS
    # Carol, from her own address, is not locked out by someone else's failures.
    own = await stub.Login(pb.LoginRequest(login="carol@example.com", password=PASSWORD), metadata=from_address("198.51.100.7"))
    assert own.principal_id == carol
    # The events name the source by a keyed fingerprint, never by the address.
    records = await identity_topic(platform.settings, "events")
    assert not any(b"203.0.113.66" in (r.value or b"") for r in records)


async def test_logins_are_rate_limited_per_address_before_any_password_is_hashed(platform, attacks):
    platform.start("processor", "identity", wait=False)
    platform.start("projector", "identity", wait=False)
    platform.launch("identity-grpc", "grpc", "identity", env={"POSEIDON_LOGIN_RATE_PER_MIN": "3"})
    async with channel(platform.settings, "identity", ()) as ch:
        stub = identity_pb2_grpc.IdentityStub(ch)
        flood = from_address("192.0.2.10")
        attacks.tried(AREA, "saturate the password hash with unauthenticated logins", "RESOURCE_EXHAUSTED before any hash")
        for _ in range(3):
            attempt = stub.Login(pb.LoginRequest(login="nobody@example.com", password="x" * 12), metadata=flood)
            await refused(attempt, grpc.StatusCode.UNAUTHENTICATED)
        started = time.monotonic()
        over = stub.Login(pb.LoginRequest(login="nobody@example.com", password="x" * 12), metadata=flood)
        details = await refused(over, grpc.StatusCode.RESOURCE_EXHAUSTED)
        assert "too many login attempts from this address; retry in" in details
        # Refused before the password KDF (tens of milliseconds per hash): the answer is immediate.
        assert time.monotonic() - started < 1.0
        # Another address is not held back by the flood.
        other = stub.Login(pb.LoginRequest(login="nobody@example.com", password="x" * 12), metadata=from_address("192.0.2.11"))
        await refused(other, grpc.StatusCode.UNAUTHENTICATED)
