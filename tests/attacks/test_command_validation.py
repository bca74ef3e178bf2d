"""Hostile commands against every hub's rules, the way the processor meets
them: a record shaped by the command's Avro schema but filled with hostile
values goes through the codec, `command_from_record` and `decide`, in
sequences aimed at a few shared aggregates and tenants (so commands meet each
other's state and foreign tenants). Every command is either accepted, with
events the processor can encode, or refused with a named rule and a reason;
`decide` never raises (anything else would be dead-lettered as a bug)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from base.settings import Settings
from hubs.app.commands import RegisterApp, subscription_id
from hubs.billing.commands import BILLING_PROVIDER, ApplyEntitlement, entitlement_id
from hubs.config.aggregate import entry_id
from hubs.config.commands import SetConfigValue
from hubs.message.aggregate import conversation_id
from hubs.message.commands import StartConversation
from hubs.tenant.commands import CreateTenant, InviteMember
from hubs.wallet.commands import OpenWallet
from infra.hub import command_from_record, command_to_record, decide, event_payload
from poseidon import bootstrap
from schemas.contracts import CommandMeta, Rejected
from tests.attacks.strategies import IDS, avro_values, command_meta, command_strings

AREA = "command validation"
CODEC = bootstrap.codec(Settings())
HUBS = sorted(bootstrap.hubs().values(), key=lambda h: h.name)


def _meta(aggregate_id: str, tenant_id: str = "acme", actor: str = "ann") -> CommandMeta:
    return CommandMeta(str(uuid.uuid4()), aggregate_id, tenant_id, "corr-1", "cause-1", actor, datetime(2026, 11, 22, tzinfo=UTC))


APP, KEY = str(uuid.UUID(int=7)), "messaging.greeting"
# One valid creating command per hub where it is easy to write: hostile commands
# that follow it meet a live aggregate (rules past "does not exist" get exercised).
SEEDS = {
    "wallet": [OpenWallet(_meta(IDS[0]), currency="EUR")],
    "tenant": [
        CreateTenant(_meta("acme"), name="Acme", owner_id="ann"),
        InviteMember(_meta("acme"), principal_id="bob", role="agent"),
    ],
    "config": [
        SetConfigValue(_meta(entry_id("tenant", "acme", KEY)), scope_kind="tenant", scope_id="acme", key=KEY, value_json='"hi"')
    ],
    "billing": [
        ApplyEntitlement(
            _meta(entitlement_id("acme"), actor=BILLING_PROVIDER),
            plan="pro",
            message_quota=10,
            period_start=datetime(2026, 11, 1, tzinfo=UTC),
            period_end=datetime(2026, 12, 1, tzinfo=UTC),
            features=("botpress",),
        )
    ],
    "message": [StartConversation(_meta(conversation_id("acme", "messenger", "1", "2")), "messenger", "1", "2")],
    "app": [RegisterApp(_meta(APP), name="Bot", kind="bot", channels=["messenger"], visibility="public")],
}


def seeded_ids(hub) -> list[str]:
    return [c.meta.aggregate_id for c in SEEDS.get(hub.name, [])] + ([subscription_id("acme", APP)] if hub.name == "app" else [])


def commands_of(hub) -> st.SearchStrategy[tuple[str, dict]]:
    """(avro name, record) of any command of `hub`."""
    return st.one_of(*(commands_of_one(hub, cls) for cls in hub.commands))


def commands_of_one(hub, cls) -> st.SearchStrategy[tuple[str, dict]]:
    """(avro name, record) of a `cls` command: hostile payload, aimed metadata."""
    schema = CODEC.catalog.latest(cls.avro_name()).parsed
    strings = command_strings()
    payload = {f["name"]: avro_values(f["type"], strings=strings) for f in schema["fields"] if f["name"] != "meta"}
    return st.fixed_dictionaries({"meta": command_meta(seeded_ids(hub)), **payload}).map(lambda r: (cls.avro_name(), r))


def event_record(hub, domain_event) -> dict:
    """The event's payload as the processor writes it (envelope aside)."""
    name = hub.event_name(domain_event)
    fields = [f["name"] for f in CODEC.catalog.latest(name).parsed["fields"] if f["name"] != "envelope"]
    return name, event_payload(domain_event, fields)


ENVELOPE = {
    "event_id": "e",
    "event_type": "",
    "aggregate_id": "a",
    "aggregate_version": 1,
    "tenant_id": "t",
    "correlation_id": "c",
    "causation_id": "k",
    "occurred_at": 0,
    "actor": "x",
    "previous_hash": "",
}


@pytest.mark.parametrize("hub", HUBS, ids=lambda h: h.name)
def test_any_sequence_of_hostile_commands_is_accepted_or_refused_with_a_rule_and_reason(attacks, hub):
    accepted = attacks.row(AREA, f"{hub.name}: hostile command sequences (accepted)", "events encode")
    refused = attacks.row(AREA, f"{hub.name}: hostile command sequences (refused)", "Rejected with rule and reason")

    seeds = [(type(c).avro_name(), command_to_record(c)) for c in SEEDS.get(hub.name, [])]

    @settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(sequence=st.lists(commands_of(hub), min_size=1, max_size=6))
    def run(sequence):
        states: dict[str, object] = {}
        for avro_name, record in seeds + sequence:
            # Through the codec first: what the processor decides is what Kafka carried.
            decoded = CODEC.decode(CODEC.encode(avro_name, record))
            try:
                command = command_from_record(hub, decoded.name, decoded.record)
            except Rejected as exc:
                refused.cases += 1
                assert exc.rule and str(exc)
                continue
            assert command_to_record(command)["meta"]["command_id"] == record["meta"]["command_id"]
            decision = decide(hub, states.get(command.meta.aggregate_id), command)
            if decision.accepted:
                accepted.cases += 1
                for domain_event in decision.events:
                    name, payload = event_record(hub, domain_event)
                    CODEC.encode(name, {"envelope": {**ENVELOPE, "event_type": name}, **payload})
                states[command.meta.aggregate_id] = decision.aggregate
            else:
                refused.cases += 1
                assert decision.rejection.rule and str(decision.rejection), repr(decision.rejection)

    run()


@pytest.mark.parametrize("hub", HUBS, ids=lambda h: h.name)
def test_a_command_record_of_another_hub_or_with_unknown_fields_is_refused_as_invalid(attacks, hub):
    attacks.tried(AREA, f"{hub.name}: foreign command name, unknown field", "InvalidCommand with a reason", 2)
    other = next(h for h in HUBS if h is not hub)
    avro_name = other.commands[0].avro_name()
    with pytest.raises(Rejected, match="is not a command of the"):
        command_from_record(hub, avro_name, {})
    mine = hub.commands[0]
    record = CODEC.decode(CODEC.encode(mine.avro_name(), next(iter(_examples(commands_of_one(hub, mine))))[1])).record
    with pytest.raises(Rejected, match=mine.avro_name()):
        command_from_record(hub, mine.avro_name(), {**record, "smuggled": "x"})


def _examples(strategy, n: int = 1) -> list:
    found = []

    @settings(max_examples=n, deadline=None, database=None)
    @given(strategy)
    def collect(example):
        found.append(example)

    collect()
    return found
