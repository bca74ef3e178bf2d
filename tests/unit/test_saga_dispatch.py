"""The Saga hub as a process manager, with no broker: the saga's batch sends the
step's command beside the StepRequested (reply address on it), the target hub's
batch answers to that address, and the saga's batch reads the answer as
RecordStepResult — the whole loop through `BatchDecider`, as the processors run it.
Also: spoke requests and answers, targets the installation lacks, forged reply
addresses, and an outbox record that cannot be encoded."""

from __future__ import annotations

import dataclasses
import json
import uuid
from datetime import UTC, datetime, timedelta

from base.settings import Settings
from hubs.message.aggregate import conversation_id
from hubs.message.commands import RouteMessage
from hubs.saga.commands import RecordStepResult, StartSaga
from hubs.saga.dispatch import OUTCOME_SCHEMA, REQUEST_SCHEMA, Outbox, result_id, start_command, translate
from hubs.saga.hub import saga_hub
from hubs.tenant.hub import HUB as TENANT_HUB
from infra.batch import AggregateCache, BatchDecider, Incoming, Outgoing, PartitionMemory
from infra.command_client import new_meta
from infra.dlq import DeadLetters
from infra.hub import DISPATCHED, REPLY_KEY, REPLY_REF, REPLY_TO, Dispatch, command_to_record, envelope
from poseidon.bootstrap import processor_hub
from sagas.inbound_message.definition import NAME as INBOUND
from sagas.registry import DEFINITIONS
from schemas.codec import Catalog, Codec
from tests.unit.test_saga_aggregate import INPUT, TENANT

CODEC = Codec(Catalog.load())
PREFIX = "ns."
SAGA = saga_hub(DEFINITIONS, hubs=["tenant", "wallet", "config", "app"], spokes=["botpress", "facebook"])


def decider(hub) -> BatchDecider:
    topics = {kind: f"{PREFIX}{hub.name}.{kind}" for kind in ("events", "command-results")}
    letters = DeadLetters(None, CODEC, "test", f"{PREFIX}{hub.name}.commands.dlq")
    return BatchDecider(
        hub, CODEC, topics, letters, AggregateCache(100), topic_of=lambda t: PREFIX + t, answer_topics={f"{PREFIX}saga.commands"}
    )


def decide(d: BatchDecider, *records: Incoming):
    return d.decide(PartitionMemory(3600, 100), [d.parse(r) for r in records], {})


def commit(d: BatchDecider, memory: PartitionMemory, batch) -> None:
    """What the processor does once the batch's transaction committed."""
    states = {r.key: r.value for r in d.state_records(batch, "changelog")}
    d.committed(memory, batch, states, {i: i for i in range(len(batch.outgoing))})


def incoming(out: Outgoing, offset: int = 0) -> Incoming:
    """What the receiving processor reads of a record another batch sent."""
    return Incoming(out.topic, 0, offset, out.key, out.value, tuple(out.headers))


def on(batch, topic: str) -> list[Outgoing]:
    return [o for o in batch.outgoing if o.topic == PREFIX + topic]


def start_saga(saga_type: str = "tenant_onboarding", body: dict | None = None):
    saga_id = str(uuid.uuid4())
    command = StartSaga(new_meta(saga_id, TENANT), saga_type=saga_type, input_json=json.dumps(body or INPUT))
    value = CODEC.encode(command.avro_name(), command_to_record(command))
    return saga_id, Incoming(f"{PREFIX}saga.commands", 0, 0, saga_id.encode(), value)


def test_a_step_goes_out_with_the_event_that_records_it_and_its_answer_comes_back_as_the_next_step():
    saga, tenant = decider(SAGA), decider(TENANT_HUB)
    saga_id, start = start_saga()

    first = decide(saga, start)
    requested = [o for o in on(first, "saga.events") if CODEC.decode(o.value).name.endswith("StepRequested")]
    assert len(requested) == 1 and (DISPATCHED, b"1") in requested[0].headers
    [sent] = on(first, "tenant.commands")
    headers = dict(sent.headers)
    assert sent.keyed and sent.key == TENANT.encode()
    assert headers[REPLY_TO] == f"{PREFIX}saga.commands".encode() and headers[REPLY_KEY] == saga_id.encode()
    request = CODEC.decode(requested[0].value).record
    assert json.loads(headers[REPLY_REF]) == {
        "command_id": request["command_id"],
        "saga_id": saga_id,
        "tenant_id": TENANT,
        "step": "create_tenant",
        "attempt": 1,
        "kind": "action",
    }
    assert CODEC.decode(sent.value).record["meta"]["command_id"] == CODEC.decode(requested[0].value).record["command_id"]

    answered = decide(tenant, incoming(sent))
    assert [CODEC.decode(r.value).record["outcome"] for r in on(answered, "tenant.command-results")] == ["ACCEPTED"]
    [reply] = on(answered, "saga.commands")
    assert reply.keyed and reply.key == saga_id.encode() and dict(reply.headers)[REPLY_REF] == headers[REPLY_REF]

    parsed = saga.parse(incoming(reply))
    assert isinstance(parsed.command, RecordStepResult) and parsed.command.succeeded
    assert parsed.command.meta.command_id == result_id(saga_id, "create_tenant", "action", 1)
    saga_state = PartitionMemory(3600, 100)
    commit(saga, saga_state, saga.decide(saga_state, [saga.parse(start)], {}))
    moved = saga.decide(saga_state, [saga.parse(incoming(reply))], {})
    names = [CODEC.decode(o.value).name.rsplit(".", 1)[-1] for o in on(moved, "saga.events")]
    assert names == ["StepSucceeded", "StepRequested"]
    [next_command] = on(moved, "wallet.commands")
    assert CODEC.decode(next_command.value).name == "poseidon.wallet.commands.OpenWallet"


def test_a_duplicate_command_is_answered_to_its_reply_address_too():
    saga, tenant = decider(SAGA), decider(TENANT_HUB)
    _, start = start_saga()
    [sent] = on(decide(saga, start), "tenant.commands")
    twice = decide(tenant, incoming(sent, 0), incoming(sent, 1))
    replies = [CODEC.decode(r.value).record for r in on(twice, "saga.commands")]
    assert [r["duplicate"] for r in replies] == [False, True]


def test_a_reply_address_that_is_not_an_answer_topic_of_this_installation_is_ignored():
    saga, tenant = decider(SAGA), decider(TENANT_HUB)
    _, start = start_saga()
    [sent] = on(decide(saga, start), "tenant.commands")
    for forged_topic in (b"ns.wallet.events", b"ns.wallet.commands", b"other.saga.commands", b"ns.no-such.commands"):
        forged = [(k, forged_topic if k == REPLY_TO else v) for k, v in sent.headers]
        answered = decide(tenant, incoming(sent._replace(headers=forged)))
        assert len(on(answered, "tenant.command-results")) == 1
        assert [o.topic for o in answered.outgoing if o.keyed] == [], forged_topic


def test_an_answer_whose_reference_names_another_command_is_not_taken():
    saga, tenant = decider(SAGA), decider(TENANT_HUB)
    _, start = start_saga()
    [sent] = on(decide(saga, start), "tenant.commands")
    [reply] = on(decide(tenant, incoming(sent)), "saga.commands")
    ref = json.loads(dict(reply.headers)[REPLY_REF])
    forged = [
        (k, json.dumps({**ref, "command_id": str(uuid.uuid4())}).encode() if k == REPLY_REF else v) for k, v in reply.headers
    ]
    parsed = saga.parse(incoming(reply._replace(headers=forged)))
    assert isinstance(parsed, Outgoing) and parsed.topic == f"{PREFIX}saga.commands.dlq"


def test_a_spoke_step_goes_out_as_a_spoke_request_and_the_spokes_outcome_is_read_as_its_result():
    saga = decider(SAGA)
    body = {
        "tenant_id": TENANT,
        "wallet_id": str(uuid.uuid4()),
        "charge_minor": 0,
        "conversation_id": str(uuid.uuid4()),
        "message_id": "m-1",
        "contact_id": "psid-1",
        "channel": "facebook",
        "channel_account_id": "page-1",
        "routed_to": "botpress",
        "rule": "default",
        "text": "hi",
        "attachments": [],
        "received_at": "",
    }
    saga_id, start = start_saga(INBOUND, body)
    memory = PartitionMemory(3600, 100)
    first = saga.decide(memory, [saga.parse(start)], {})
    commit(saga, memory, first)
    [reserve] = on(first, "wallet.commands")
    ref = dict(reserve.headers)[REPLY_REF]
    result = {
        "command_id": CODEC.decode(reserve.value).record["meta"]["command_id"],
        "command_type": "poseidon.wallet.commands.ReserveFunds",
        "hub": "wallet",
        "aggregate_id": body["wallet_id"],
        "tenant_id": TENANT,
        "correlation_id": "c",
        "outcome": "ACCEPTED",
        "version": 2,
        "rejection": "",
        "reason": "",
        "event_ids": [],
        "event_types": [],
        "duplicate": False,
        "decided_at": datetime.now(UTC),
    }
    reply = Incoming(
        f"{PREFIX}saga.commands", 0, 1, saga_id.encode(), CODEC.encode("poseidon.CommandResult", result), ((REPLY_REF, ref),)
    )
    asked = saga.decide(memory, [saga.parse(reply)], {})
    [request] = on(asked, "spoke.botpress.requests")
    decoded = CODEC.decode(request.value)
    assert decoded.name == REQUEST_SCHEMA and request.key == saga_id.encode()
    assert decoded.record["request"]["step"] == "ask_bot" and decoded.record["action"] == "AskBot"
    assert dict(request.headers)[REPLY_TO] == f"{PREFIX}saga.commands".encode()

    outcome = {
        "envelope": envelope(
            OUTCOME_SCHEMA,
            event_id=str(uuid.uuid4()),
            aggregate_id=saga_id,
            tenant_id=TENANT,
            correlation_id="c",
            causation_id="x",
            occurred_at=datetime.now(UTC),
            actor="spoke:botpress",
        ),
        "spoke": "botpress",
        "system": "botpress",
        "operation": "AskBot",
        "succeeded": True,
        "detail": "1 reply",
        "error_code": "",
        "external_id": "",
        "data": {},
        "attempts": 1,
        "request": decoded.record["request"],
        "result_json": json.dumps({"replies": []}),
    }
    answer = translate(OUTCOME_SCHEMA, outcome, {})
    assert isinstance(answer, RecordStepResult) and answer.step == "ask_bot" and answer.succeeded
    assert answer.meta.command_id == result_id(saga_id, "ask_bot", "action", 1)
    assert translate(OUTCOME_SCHEMA, {**outcome, "request": None}, {}) is None


def test_a_target_the_installation_lacks_is_not_sent_and_is_left_to_the_deadline():
    only_wallet = saga_hub(DEFINITIONS, hubs=["wallet"])
    d = decider(only_wallet)
    _, start = start_saga()
    batch = decide(d, start)
    assert [o for o in batch.outgoing if o.keyed] == []
    requested = [o for o in on(batch, "saga.events") if CODEC.decode(o.value).name.endswith("StepRequested")]
    assert requested and (DISPATCHED, b"1") not in requested[0].headers
    assert Outbox([], [])("poseidon.saga.SagaStarted", {}) == []


def test_an_outbox_that_fails_on_an_event_leaves_it_to_the_driver_and_the_command_is_still_decided():
    def unencodable(name, event):
        return [Dispatch("tenant.commands", "k", "poseidon.tenant.commands.CreateTenant", {"meta": {}}, reply_ref=b"")]

    def raising(name, event):
        raise KeyError("command_json")

    for outbox in (unencodable, raising):
        d = decider(dataclasses.replace(SAGA, outbox=outbox))
        _, start = start_saga()
        batch = decide(d, start)
        assert batch.counts == {"accepted": 1}
        assert [o for o in batch.outgoing if o.keyed] == []
        assert all((DISPATCHED, b"1") not in o.headers for o in on(batch, "saga.events"))


def test_a_record_that_is_neither_a_command_nor_an_answer_is_dead_lettered():
    d = decider(SAGA)
    saga_id = str(uuid.uuid4())
    unrelated = {
        "command_id": "c",
        "command_type": "x",
        "hub": "wallet",
        "aggregate_id": saga_id,
        "tenant_id": TENANT,
        "correlation_id": "c",
        "outcome": "ACCEPTED",
        "version": 1,
        "rejection": "",
        "reason": "",
        "event_ids": [],
        "event_types": [],
        "duplicate": False,
        "decided_at": datetime.now(UTC) - timedelta(seconds=1),
    }
    value = CODEC.encode("poseidon.CommandResult", unrelated)
    parsed = d.parse(Incoming(f"{PREFIX}saga.commands", 0, 0, saga_id.encode(), value))  # no reply_ref header
    assert isinstance(parsed, Outgoing) and parsed.topic == f"{PREFIX}saga.commands.dlq"


# -- a saga started by the event that triggers it ------------------------------------


def route_message(facts: dict[str, str]) -> tuple[str, Incoming]:
    """A RouteMessage for a bot as the router sends it, with these decision facts."""
    conversation = conversation_id(TENANT, "facebook", "104857600123", "psid-1")
    meta = new_meta(conversation, TENANT, actor="message-router")
    command = RouteMessage(
        meta, channel="facebook", channel_account_id="104857600123", contact_id="psid-1", message_id="m-1", text="hi",
        received_at=datetime.now(UTC), routed=True, rule="Routed", reason="bot", app_id=str(uuid.uuid4()), spoke="botpress",
        facts=facts,
    )  # fmt: skip
    value = CODEC.encode(command.avro_name(), command_to_record(command))
    return conversation, Incoming(f"{PREFIX}message.commands", 0, 0, conversation.encode(), value)


def test_a_routed_message_starts_its_saga_in_the_transaction_that_records_the_decision():
    settings = Settings(message_charge_minor=7)
    message = decider(processor_hub("message", settings))
    saga = decider(SAGA)
    wallet = str(uuid.uuid4())
    _, command = route_message({"tenant": TENANT, "wallet": wallet})

    batch = decide(message, command)

    [routed] = [o for o in on(batch, "message.events") if CODEC.decode(o.value).name.endswith("MessageRouted")]
    assert (DISPATCHED, b"1") in routed.headers, "the driver skips it: the start went out with it"
    [start] = on(batch, "saga.commands")
    decoded = CODEC.decode(start.value)
    assert decoded.name == StartSaga.avro_name() and start.keyed
    routed_record = CODEC.decode(routed.value).record
    definition = DEFINITIONS[INBOUND]
    body = definition.trigger.start(routed_record, {"wallet_id": wallet, "charge_minor": 7})
    by_driver = start_command(definition, routed_record, body, "saga-driver")
    assert decoded.record["meta"]["command_id"] == by_driver.meta.command_id, (
        "the id the driver gives the same start: sent by both during an upgrade, it is one saga"
    )
    assert start.key == definition.trigger.saga_id(routed_record).encode()
    started = json.loads(decoded.record["input_json"])
    assert (started["wallet_id"], started["charge_minor"], started["message_id"]) == (wallet, 7, "m-1")

    first = decide(saga, incoming(start))
    [reserve] = on(first, "wallet.commands")
    reservation = CODEC.decode(reserve.value).record
    assert (reservation["meta"]["aggregate_id"], reservation["amount"]) == (wallet, 7)


def test_a_decision_recorded_without_the_wallet_fact_is_left_to_the_driver():
    message = decider(processor_hub("message", Settings()))
    _, command = route_message({"tenant": TENANT})

    batch = decide(message, command)

    assert on(batch, "saga.commands") == []
    assert all((DISPATCHED, b"1") not in o.headers for o in on(batch, "message.events"))
