"""The Wallet hub end to end on the real stack: command → Avro event on Kafka →
PostgreSQL projection → gRPC answer, with duplicates, rejections, dead letters,
the hash chain and health/reflection."""

from __future__ import annotations

import hashlib
import uuid

import grpc
import pytest
from aiokafka import AIOKafkaProducer
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from hubs.wallet.commands import CreditFunds, DebitFunds, OpenWallet, ReserveFunds
from infra import tls
from infra.command_client import CommandClient, new_meta
from poseidon import bootstrap
from schemas.protos import wallet_pb2, wallet_pb2_grpc
from tests.harness import bearer, channel, eventually, mint_token, read_topic

pytestmark = pytest.mark.integration

TENANT = "tenant-a"


@pytest.fixture
async def running(platform):
    for role in ("processor", "projector", "grpc"):
        platform.start(role, wait=False)
    for role in ("processor", "projector", "grpc"):
        platform.wait_healthy(f"wallet-{role}")
    codec = bootstrap.codec(platform.settings)
    async with CommandClient(platform.settings, codec, [bootstrap.hub("wallet")]) as client:
        yield platform, client, codec


def stub(settings, metadata=None):
    ch = channel(settings, "wallet", metadata)
    return ch, wallet_pb2_grpc.WalletQueryStub(ch)


async def balance_when_version(settings, wallet_id: str, version: int, tenant: str = TENANT):
    channel, wallet = stub(settings)
    async with channel:

        async def check():
            try:
                reply = await wallet.GetBalance(wallet_pb2.GetBalanceRequest(tenant_id=tenant, wallet_id=wallet_id))
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.NOT_FOUND:
                    return None
                raise
            return reply if reply.version >= version else None

        return await eventually(check)


async def test_a_command_travels_to_an_event_the_projection_and_a_grpc_answer(running):
    platform, client, codec = running
    wallet_id = str(uuid.uuid4())
    opened = await client.send(OpenWallet(new_meta(wallet_id, TENANT, correlation_id="corr-1"), currency="EUR"))
    credited = await client.send(CreditFunds(new_meta(wallet_id, TENANT, correlation_id="corr-1"), amount=500, reference="pay-9"))
    debited = await client.send(DebitFunds(new_meta(wallet_id, TENANT, correlation_id="corr-1"), amount=120))
    assert (opened.accepted, credited.accepted, debited.accepted) == (True, True, True)
    assert (opened.version, credited.version, debited.version) == (1, 2, 3)

    records = [
        r for r in await read_topic(platform.settings, platform.settings.topic("wallet.events")) if r.key == wallet_id.encode()
    ]
    decoded = [codec.decode(r.value) for r in records]
    assert [d.name.rsplit(".", 1)[1] for d in decoded] == ["WalletOpened", "FundsCredited", "FundsDebited"]
    envelopes = [d.record["envelope"] for d in decoded]
    assert [e["aggregate_version"] for e in envelopes] == [1, 2, 3]
    assert {e["correlation_id"] for e in envelopes} == {"corr-1"}
    assert {e["tenant_id"] for e in envelopes} == {TENANT}
    assert decoded[1].record["reference"] == "pay-9" and decoded[1].record["balance_after"] == 500
    # Tamper evidence: each event names the hash of the stored bytes of the one before.
    assert envelopes[0]["previous_hash"] == ""
    for previous, current in zip(records, envelopes[1:], strict=False):
        assert current["previous_hash"] == hashlib.sha256(previous.value).hexdigest()
    assert dict(records[0].headers)["event_type"] == b"poseidon.wallet.WalletOpened"

    reply = await balance_when_version(platform.settings, wallet_id, 3)
    assert (reply.balance, reply.reserved, reply.available, reply.currency) == (380, 0, 380, "EUR")
    channel, wallet = stub(platform.settings)
    async with channel:
        page = await wallet.ListLedger(wallet_pb2.ListLedgerRequest(tenant_id=TENANT, wallet_id=wallet_id, page_size=1))
        assert [(e.kind, e.balance_delta) for e in page.entries] == [("credit", 500)]
        page2 = await wallet.ListLedger(
            wallet_pb2.ListLedgerRequest(tenant_id=TENANT, wallet_id=wallet_id, page_size=1, page_token=page.next_page_token)
        )
        assert [(e.kind, e.balance_delta, e.correlation_id) for e in page2.entries] == [("debit", -120, "corr-1")]
        assert page2.next_page_token == ""


async def test_a_duplicate_command_id_is_answered_not_reapplied(running):
    platform, client, codec = running
    wallet_id = str(uuid.uuid4())
    await client.send(OpenWallet(new_meta(wallet_id, TENANT), currency="EUR"))
    credit = CreditFunds(new_meta(wallet_id, TENANT, command_id="credit-once"), amount=700)
    first = await client.send(credit)
    again = await client.send(credit)
    assert first.accepted and not first.duplicate
    assert again.accepted and again.duplicate and again.version == first.version
    assert again.event_ids == first.event_ids

    reply = await balance_when_version(platform.settings, wallet_id, 2)
    assert reply.balance == 700
    events = [
        codec.decode(r.value)
        for r in await read_topic(platform.settings, platform.settings.topic("wallet.events"))
        if r.key == wallet_id.encode()
    ]
    assert sum(1 for e in events if e.name.endswith("FundsCredited")) == 1


async def test_an_overdraft_is_rejected_with_a_reason_and_changes_nothing(running):
    platform, client, codec = running
    wallet_id = str(uuid.uuid4())
    await client.send(OpenWallet(new_meta(wallet_id, TENANT), currency="EUR"))
    await client.send(CreditFunds(new_meta(wallet_id, TENANT), amount=100))
    await client.send(ReserveFunds(new_meta(wallet_id, TENANT), reservation_id="r-1", amount=60))
    refused = await client.send(DebitFunds(new_meta(wallet_id, TENANT), amount=50))
    assert not refused.accepted
    assert refused.rejection == "InsufficientFunds"
    assert "only 40 available" in refused.reason
    assert refused.version == 3 and refused.event_ids == ()

    results = [
        codec.decode(r.value).record
        for r in await read_topic(platform.settings, platform.settings.topic("wallet.command-results"))
    ]
    assert any(r["outcome"] == "REJECTED" and r["rejection"] == "InsufficientFunds" for r in results)
    reply = await balance_when_version(platform.settings, wallet_id, 3)
    assert (reply.balance, reply.reserved, reply.available) == (100, 60, 40)


async def test_another_tenant_cannot_command_or_read_a_wallet(running):
    platform, client, _ = running
    settings = platform.settings
    wallet_id = str(uuid.uuid4())
    await client.send(OpenWallet(new_meta(wallet_id, TENANT), currency="EUR"))
    stolen = await client.send(DebitFunds(new_meta(wallet_id, "tenant-b"), amount=1))
    assert not stolen.accepted and stolen.rejection == "TenantMismatch"
    await balance_when_version(settings, wallet_id, 1)

    # A platform principal asking in the wrong tenant: the wallet is simply not there.
    ch, wallet = stub(settings)
    async with ch:
        for call in (
            wallet.GetBalance(wallet_pb2.GetBalanceRequest(tenant_id="tenant-b", wallet_id=wallet_id)),
            wallet.ListLedger(wallet_pb2.ListLedgerRequest(tenant_id="tenant-b", wallet_id=wallet_id)),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await call
            assert err.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await wallet.GetBalance(wallet_pb2.GetBalanceRequest(tenant_id=TENANT, wallet_id="not-a-uuid"))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "wallet_id" in err.value.details()
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await wallet.ListLedger(wallet_pb2.ListLedgerRequest(tenant_id=TENANT, wallet_id=wallet_id, page_token="garbage"))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "page_token" in err.value.details()

    # A user who is no member of the wallet's tenant is refused, whatever ids it sends.
    ch, wallet = stub(settings, bearer(mint_token(settings, "user-of-tenant-b")))
    async with ch:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await wallet.GetBalance(wallet_pb2.GetBalanceRequest(tenant_id=TENANT, wallet_id=wallet_id))
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED

    # No token, a forged one, an expired one: UNAUTHENTICATED, with the reason.
    for metadata, reason in (
        ((), "missing bearer token"),
        (bearer(mint_token(settings, "u")[:-4] + "AAAA"), "invalid token"),
        (bearer(mint_token(settings, "u", ttl_s=-60)), "token expired"),
    ):
        ch, wallet = stub(settings, metadata)
        async with ch:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await wallet.GetBalance(wallet_pb2.GetBalanceRequest(tenant_id=TENANT, wallet_id=wallet_id))
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert reason in err.value.details()


async def test_garbage_on_the_command_topic_lands_in_the_dead_letter_topic_and_processing_goes_on(running):
    platform, client, codec = running
    settings = platform.settings
    wallet_id = str(uuid.uuid4())
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        garbage = b"{not avro at all"
        wrong_schema = codec.encode("poseidon.wallet.FundsCredited", {
            "envelope": {"event_id": "e", "event_type": "x", "aggregate_id": wallet_id, "aggregate_version": 1,
                         "tenant_id": TENANT, "correlation_id": "c", "causation_id": "c", "occurred_at": 0, "actor": "a",
                         "previous_hash": ""},
            "entry_id": "e", "amount": 1, "balance_after": 1,
        })  # fmt: skip
        await producer.send_and_wait(settings.topic("wallet.commands"), garbage, key=wallet_id.encode())
        await producer.send_and_wait(settings.topic("wallet.commands"), wrong_schema, key=wallet_id.encode())
    finally:
        await producer.stop()
    # Same partition (same key), after the poison: still processed.
    opened = await client.send(OpenWallet(new_meta(wallet_id, TENANT), currency="EUR"))
    assert opened.accepted

    dead = [codec.decode(r.value).record for r in await read_topic(settings, settings.topic("wallet.commands.dlq"))]
    assert [d["payload"] for d in dead] == [garbage, wrong_schema]
    assert "not Avro" in dead[0]["reason"]
    assert "not a command of the wallet hub" in dead[1]["reason"]
    assert all(d["source_topic"] == settings.topic("wallet.commands") for d in dead)
    assert dead[0]["source_offset"] < dead[1]["source_offset"]


async def test_an_undecodable_event_is_dead_lettered_by_the_projector_which_carries_on(running):
    platform, client, codec = running
    settings = platform.settings
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(settings.topic("wallet.events"), b"\xc3\x01" + b"\xff" * 8 + b"body", key=b"k", partition=0)
    finally:
        await producer.stop()
    wallet_id = str(uuid.uuid4())
    await client.send(OpenWallet(new_meta(wallet_id, TENANT), currency="EUR"))
    await balance_when_version(settings, wallet_id, 1)
    dead = await eventually(lambda: _read_dlq(settings, codec, "wallet.events.dlq"))
    assert "unknown schema fingerprint ffffffffffffffff" in dead[0]["reason"]
    assert dead[0]["processor"] == "wallet-projector"


async def _read_dlq(settings, codec, name):
    return [codec.decode(r.value).record for r in await read_topic(settings, settings.topic(name))]


async def test_the_grpc_server_answers_standard_health_checks_and_reflection(running):
    platform, _, _ = running
    async with tls.channel(platform.settings, f"127.0.0.1:{platform.settings.grpc_port('wallet')}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "poseidon.wallet.v1.WalletQuery"):
            reply = await health.Check(health_pb2.HealthCheckRequest(service=service))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        responses = reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        async for response in responses:
            names = {s.name for s in response.list_services_response.service}
            break
        assert {"poseidon.wallet.v1.WalletQuery", "grpc.health.v1.Health"} <= names


async def test_the_events_topic_keeps_everything_forever_and_was_created_explicitly(namespace):
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    admin = AIOKafkaAdminClient(bootstrap_servers=namespace.kafka_bootstrap)
    await admin.start()
    try:
        topic = namespace.topic("wallet.events")

        async def topic_configs():
            [response] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
            found = {c[0]: c[1] for c in response.resources[0][4]}
            return found if "retention.ms" in found else None

        configs = await eventually(topic_configs, timeout=15)
        assert configs["retention.ms"] == "-1"
        assert configs["cleanup.policy"] == "delete"
        assert configs["min.insync.replicas"] == str(namespace.topic_min_isr)
        described = await admin.describe_topics([topic])
        assert len(described[0]["partitions"]) == namespace.topic_partitions
    finally:
        await admin.close()
