"""Audit on the real stack: the wallet processor writes hash-chained events, the
audit verifies them, a forged record written straight to wallet.events is named
by offset and event id (exit 1), and histories by aggregate, correlation and
tenant come back in order, as JSON, with personal data masked."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime

import pytest
from aiokafka import AIOKafkaProducer
from click.testing import CliRunner

from hubs.wallet.commands import CreditFunds, DebitFunds, OpenWallet
from infra.audit import HistoryQuery, history, history_topics, verify
from infra.command_client import CommandClient, new_meta
from poseidon import bootstrap
from poseidon.audit_cli import audit
from tests.harness import env_for, read_topic

pytestmark = pytest.mark.integration


async def invoke(settings, *args: str):
    """The `audit` click group in a thread (it runs its own event loop), in the test's namespace."""
    return await asyncio.to_thread(CliRunner().invoke, audit, list(args), env=env_for(settings, POSEIDON_LOG_LEVEL="WARNING"))


async def test_verify_passes_then_names_a_forged_record_and_histories_come_back_in_order_and_masked(platform):
    settings = platform.settings
    codec = bootstrap.codec(settings)
    wallet_hub = bootstrap.hub("wallet")
    platform.start("processor", "wallet")
    w_a, w_b = str(uuid.uuid4()), str(uuid.uuid4())
    async with CommandClient(settings, codec, [wallet_hub]) as client:
        for command in (
            OpenWallet(new_meta(w_a, "tenant-a", correlation_id="corr-a", actor="alice"), currency="EUR"),
            CreditFunds(new_meta(w_a, "tenant-a", correlation_id="corr-a", actor="alice"), amount=500, reference="pay-1"),
            DebitFunds(new_meta(w_a, "tenant-a", correlation_id="corr-a2"), amount=120),
            OpenWallet(new_meta(w_b, "tenant-b", correlation_id="corr-b"), currency="USD"),
            CreditFunds(new_meta(w_b, "tenant-b", correlation_id="corr-b"), amount=300),
        ):
            assert (await client.send(command)).accepted

    report = await verify(settings, codec, [wallet_hub])
    assert (report.ok, report.streams, report.events) == (True, 2, 5)
    cli = await invoke(settings, "verify", "--json")
    assert cli.exit_code == 0, cli.output
    assert json.loads(cli.stdout)["ok"] is True

    # The forgery: wallet A's FundsCredited re-encoded with another amount, appended
    # to its partition by a plain producer under the same key.
    events_topic = settings.topic("wallet.events")
    original = None
    for record in await read_topic(settings, events_topic):
        decoded = codec.decode(record.value)
        if record.key == w_a.encode() and decoded.name == "poseidon.wallet.FundsCredited":
            original = (record, decoded)
    record, decoded = original
    forged_fields = {**decoded.record, "amount": 5_000_000, "balance_after": 5_000_000}
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await producer.start()
    try:
        sent = await producer.send_and_wait(
            events_topic, codec.encode(decoded.name, forged_fields), key=w_a.encode(), partition=record.partition
        )
    finally:
        await producer.stop()

    report = await verify(settings, codec, [wallet_hub])
    [broken] = report.broken
    assert (broken.topic, broken.partition, broken.offset) == (events_topic, sent.partition, sent.offset)
    assert (broken.aggregate_id, broken.event_id, broken.version) == (w_a, decoded.record["envelope"]["event_id"], 2)
    assert {p.check for p in broken.problems} == {"mac", "version", "previous_hash"}
    cli = await invoke(settings, "verify", "--json", "--hub", "wallet")
    assert cli.exit_code == 1, cli.output
    named = json.loads(cli.stdout)["broken_links"]
    assert [(b["offset"], b["event_id"]) for b in named] == [(sent.offset, decoded.record["envelope"]["event_id"])]
    text = await invoke(settings, "verify", "--no-progress")
    assert text.exit_code == 1 and f"@{sent.offset}" in text.stdout and "1 broken link" in text.stdout
    assert (await invoke(settings, "verify", "--tenant", "tenant-b", "--json")).exit_code == 0
    assert (await invoke(settings, "verify", "--aggregate", w_b, "--json")).exit_code == 0

    # An inbound item of conversation corr-a, as ingress stores it: its text must come back masked.
    inbound = {
        "envelope": {
            "event_id": str(uuid.uuid4()),
            "event_type": "poseidon.ingress.InboundReceived",
            "aggregate_id": "facebook/page-1/psid-1",
            "aggregate_version": 0,
            "tenant_id": "",
            "correlation_id": "corr-a",
            "causation_id": "",
            "occurred_at": datetime(2020, 1, 1, tzinfo=UTC),
            "actor": "facebook",
            "previous_hash": "",
        },
        "platform": "facebook",
        "kind": "message",
        "account_id": "page-1",
        "contact_id": "psid-1",
        "text": "my phone is +33612345678",
        "sent_at": datetime(2020, 1, 1, tzinfo=UTC),
        "raw": '{"text": "my phone is +33612345678"}',
    }
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(
            settings.topic("ingress.inbound"),
            codec.encode("poseidon.ingress.InboundReceived", inbound),
            key=b"facebook/page-1/psid-1",
        )
    finally:
        await producer.stop()

    topics = history_topics(bootstrap.hubs().values(), bootstrap.spokes())
    by_aggregate = await history(settings, codec, topics, HistoryQuery(aggregate=w_a))
    events = [e for e in by_aggregate.entries if e.topic == events_topic]
    assert [(e.event_type.rsplit(".", 1)[1], e.version) for e in events] == [
        ("WalletOpened", 1),
        ("FundsCredited", 2),
        ("FundsCredited", 2),  # the forgery is in the history too (its copied occurred_at, a later offset)
        ("FundsDebited", 3),
    ]
    assert [e.occurred_at for e in by_aggregate.entries] == sorted(e.occurred_at for e in by_aggregate.entries)
    assert sum(e.event_type == "poseidon.CommandResult" for e in by_aggregate.entries) == 3
    assert events[0].actor == "alice" and events[1].payload["reference"] == "pay-1"

    cli = await invoke(settings, "history", "--correlation", "corr-a", "--json", "--no-progress")
    assert cli.exit_code == 0, cli.output
    entries = json.loads(cli.stdout)["entries"]
    assert entries[0]["topic"] == settings.topic("ingress.inbound")  # 2020: first in time order
    # The raw body is JSON: masked field by field, its text hidden like the text field's.
    assert entries[0]["payload"]["text"] == "***" and json.loads(entries[0]["payload"]["raw"]) == {"text": "***"}
    assert "33612345678" not in cli.stdout
    assert {e["aggregate_id"] for e in entries[1:]} == {w_a} and {e["correlation_id"] for e in entries} == {"corr-a"}
    assert [e["event_type"] for e in entries if e["topic"] == events_topic] == [
        "poseidon.wallet.WalletOpened",
        "poseidon.wallet.FundsCredited",
        "poseidon.wallet.FundsCredited",
    ]

    cli = await invoke(settings, "history", "--tenant", "tenant-b", "--hub", "wallet", "--no-progress")
    assert cli.exit_code == 0, cli.output
    lines = cli.stdout.splitlines()
    assert sum("poseidon.wallet." in line for line in lines) == 2 and w_a not in cli.stdout and w_b in cli.stdout
    assert "WalletOpened" in lines[0] and "currency=USD" in lines[0]

    later = await invoke(settings, "history", "--tenant", "tenant-a", "--from", "2100-01-01", "--json")
    assert json.loads(later.stdout)["entries"] == []
