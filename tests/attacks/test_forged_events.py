"""The review's broker attack, replayed against the real stack: a record appended to
`wallet.events` by a plain producer, with a valid-looking envelope, the next version
and a correctly computed previous_hash — a phantom credit. The projector must refuse
it (dead letter with the reason) and apply the next real credit; `audit verify` must
name the forged record itself, at once. Also: a real event re-sent with its amount
altered under its genuine MAC header."""

from __future__ import annotations

import hashlib
import uuid

import pytest
from aiokafka import AIOKafkaProducer

from hubs.wallet.commands import CreditFunds, OpenWallet
from infra.audit import verify
from infra.command_client import new_meta
from poseidon import bootstrap
from tests.harness import eventually, read_topic
from tests.integration.test_wallet_slice import TENANT, _read_dlq, balance_when_version, running  # noqa: F401  (fixture)

pytestmark = pytest.mark.integration

AREA = "forged events"


async def _append(settings, value: bytes, key: bytes, partition: int, headers) -> int:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        return (
            await producer.send_and_wait(settings.topic("wallet.events"), value, key=key, partition=partition, headers=headers)
        ).offset
    finally:
        await producer.stop()


async def test_a_forged_or_altered_event_is_refused_by_the_projector_and_named_by_audit(running, attacks):  # noqa: F811
    platform, client, codec = running
    settings = platform.settings
    wallet_id = str(uuid.uuid4())
    assert (await client.send(OpenWallet(new_meta(wallet_id, TENANT), currency="EUR"))).accepted
    assert (await client.send(CreditFunds(new_meta(wallet_id, TENANT), amount=100, reference="real-1"))).accepted
    await balance_when_version(settings, wallet_id, 2)

    [*_, last] = [r for r in await read_topic(settings, settings.topic("wallet.events")) if r.key == wallet_id.encode()]
    real = codec.decode(last.value)
    genuine_headers = list(last.headers)
    plain_headers = [(k, v) for k, v in genuine_headers if k != "poseidon-mac"]
    envelope = {
        **real.record["envelope"],
        "event_id": str(uuid.uuid4()),
        "aggregate_version": 3,
        "previous_hash": hashlib.sha256(last.value).hexdigest(),  # the chain imitated perfectly
    }
    phantom = codec.encode(real.name, {**real.record, "envelope": envelope, "amount": 1_000_000, "balance_after": 1_000_100})
    forged_offset = await _append(settings, phantom, last.key, last.partition, plain_headers)
    attacks.tried(AREA, "appended event imitating envelope, version and previous_hash", "dead-lettered, not applied")
    altered = codec.encode(real.name, {**real.record, "amount": 100_000})
    await _append(settings, altered, last.key, last.partition, genuine_headers)
    attacks.tried(AREA, "a real event re-sent altered, under its genuine MAC header", "dead-lettered, not applied")

    # The next real credit is applied on top of the real balance.
    assert (await client.send(CreditFunds(new_meta(wallet_id, TENANT), amount=50, reference="real-2"))).accepted
    balance = await balance_when_version(settings, wallet_id, 3)
    assert balance.balance == 150

    dead = await eventually(lambda: _dead_at_least(settings, codec, 2))
    reasons = [d["reason"] for d in dead if d["source_topic"] == settings.topic("wallet.events")]
    assert any("not written by the wallet processor" in r for r in reasons)
    assert any("does not match the record" in r for r in reasons)

    report = await verify(settings, codec, [bootstrap.hub("wallet")], aggregate=wallet_id)
    [broken] = report.broken
    assert broken.offset == forged_offset and broken.problems[0].check == "mac"
    attacks.tried(AREA, "audit verify over a forged record", "names the forged record itself, not its successor")


async def _dead_at_least(settings, codec, count: int):
    dead = await _read_dlq(settings, codec, "wallet.events.dlq")
    return dead if len(dead) >= count else None
