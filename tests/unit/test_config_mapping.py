"""The config read model's pure event → statements mapping, fed realistic records:
events the aggregate really emitted, wrapped in the envelope the processor builds
and passed through the real Avro codec, as the projector receives them."""

from __future__ import annotations

import uuid

import pytest

from hubs.config.aggregate import PLATFORM_TENANT, entry_id
from hubs.config.commands import SetConfigValue, UnsetConfigValue
from hubs.config.hub import HUB
from infra.hub import decide, event_payload
from infra.projection import Statement
from projections.config import PROJECTION
from projections.config.mapping import CURRENT, HISTORY, RECORDED, UPSERT, apply
from schemas.codec import Catalog, Codec
from schemas.contracts import CommandMeta

CODEC = Codec(Catalog.load())
EVENT_FIELDS = {
    name: [f["name"] for f in CODEC.catalog.latest(name).parsed["fields"] if f["name"] != "envelope"]
    for name in CODEC.catalog.names()
    if name.startswith("poseidon.config.") and ".commands." not in name
}
HISTORY_COLUMNS = (
    "entry_id", "version", "tenant_id", "scope_kind", "scope_id", "key", "change", "value_json",
    "changed_at", "changed_by", "event_id", "correlation_id",
)  # fmt: skip
CURRENT_COLUMNS = ("entry_id", "tenant_id", "scope_kind", "scope_id", "key", "value_json", "version", "changed_at", "changed_by")


class Story:
    """Runs commands against one key in one scope and keeps the event records the
    processor would have published, in order."""

    def __init__(self, scope_kind: str = "tenant", scope_id: str = "tenant-a", key: str = "bot.greeting"):
        self.scope = (scope_kind, scope_id, key)
        self.entry_id = entry_id(*self.scope)
        self.tenant = scope_id if scope_kind == "tenant" else PLATFORM_TENANT
        self.entry = None

    def do(self, command_cls, *payload, actor: str = "principal-1") -> tuple[str, dict]:
        command_id = str(uuid.uuid4())
        meta = CommandMeta(command_id, self.entry_id, self.tenant, f"corr-{command_id}", command_id, actor)
        decision = decide(HUB, self.entry, command_cls(meta, *self.scope, *payload))
        assert decision.accepted and len(decision.events) == 1, decision.rejection
        self.entry = decision.aggregate
        [event] = decision.events
        name = HUB.event_name(event)
        record = {
            "envelope": {
                "event_id": str(uuid.uuid4()), "event_type": name, "aggregate_id": self.entry_id,
                "aggregate_version": event.originator_version, "tenant_id": self.tenant,
                "correlation_id": meta.correlation_id, "causation_id": command_id, "occurred_at": event.timestamp,
                "actor": actor, "previous_hash": "",
            },
            **event_payload(event, EVENT_FIELDS[name]),
        }  # fmt: skip
        decoded = CODEC.decode(CODEC.encode(name, record))
        return decoded.name, decoded.record


def rows(statements: list[Statement]) -> tuple[dict, dict]:
    history, current = statements
    assert (history.sql, history.phase, current.sql, current.phase) == (HISTORY, RECORDED, UPSERT, CURRENT)
    return dict(zip(HISTORY_COLUMNS, history.args, strict=True)), dict(zip(CURRENT_COLUMNS, current.args, strict=True))


def test_config_value_set_records_a_history_row_and_upserts_the_current_value():
    story = Story()
    story.do(SetConfigValue, "1")
    event_type, record = story.do(SetConfigValue, '{"text": "Hi"}', actor="principal-7")

    history, current = rows(apply(event_type, record))

    env = record["envelope"]
    assert history == {
        "entry_id": uuid.UUID(story.entry_id), "version": 2, "tenant_id": "tenant-a", "scope_kind": "tenant",
        "scope_id": "tenant-a", "key": "bot.greeting", "change": "set", "value_json": '{"text":"Hi"}',
        "changed_at": env["occurred_at"], "changed_by": "principal-7", "event_id": uuid.UUID(env["event_id"]),
        "correlation_id": env["correlation_id"],
    }  # fmt: skip
    assert current == {
        "entry_id": uuid.UUID(story.entry_id), "tenant_id": "tenant-a", "scope_kind": "tenant", "scope_id": "tenant-a",
        "key": "bot.greeting", "value_json": '{"text":"Hi"}', "version": 2, "changed_at": env["occurred_at"],
        "changed_by": "principal-7",
    }  # fmt: skip


def test_config_value_unset_records_an_unset_without_value_and_clears_the_current_value():
    story = Story("environment", "production")
    story.do(SetConfigValue, "true")
    event_type, record = story.do(UnsetConfigValue)

    history, current = rows(apply(event_type, record))

    assert (history["change"], history["value_json"], history["version"]) == ("unset", None, 2)
    assert (current["value_json"], current["version"]) == (None, 2)
    assert {history["tenant_id"], current["tenant_id"]} == {PLATFORM_TENANT}
    assert (current["scope_kind"], current["scope_id"]) == ("environment", "production")


def test_sets_and_unsets_share_one_statement_per_table_so_a_batch_of_them_is_one_executemany():
    story = Story("global", "")
    kinds = {
        tuple((s.sql, s.phase) for s in apply(*story.do(cls, *payload)))
        for cls, payload in ((SetConfigValue, ("1",)), (UnsetConfigValue, ()), (SetConfigValue, ("2",)))
    }

    assert kinds == {((HISTORY, RECORDED), (UPSERT, CURRENT))}


def test_an_event_the_read_model_does_not_know_is_refused():
    with pytest.raises(ValueError, match="no mapping"):
        apply("poseidon.config.ConfigExploded", {"envelope": {}})


def test_the_projection_reads_the_config_events_topic_into_its_two_tables():
    assert (PROJECTION.name, tuple(PROJECTION.topics), tuple(PROJECTION.tables)) == (
        "config",
        ("config.events",),
        ("config_values", "config_history"),
    )
