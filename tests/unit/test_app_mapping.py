"""The app read model's pure event → statements mapping, fed realistic records:
events the aggregates really emitted, wrapped in the envelope the processor builds
and passed through the real Avro codec, as the projector receives them."""

from __future__ import annotations

import json
import uuid

import pytest

from hubs.app.commands import ConnectBot, RegisterApp, SetSubscriptionGuards, SubscribeApp, UnsubscribeApp, subscription_id
from hubs.app.hub import HUB
from infra.hub import decide, event_payload
from infra.projection import Statement
from projections.app import PROJECTION
from projections.app.mapping import CREATED, REGISTER, SET_ACTIVE, SET_BOT_ROW, SET_GUARDS, SUBSCRIBE, UPDATED, apply
from schemas.codec import Catalog, Codec
from schemas.contracts import CommandMeta

CODEC = Codec(Catalog.load())
TENANT = "tenant-a"
APP_EVENTS = [n for n in CODEC.catalog.names() if n.startswith("poseidon.app.") and ".commands." not in n]
EVENT_FIELDS = {
    name: [f["name"] for f in CODEC.catalog.latest(name).parsed["fields"] if f["name"] != "envelope"] for name in APP_EVENTS
}
HOURS = {
    "timezone": "America/New_York",
    "windows": [{"day": "sat", "opens": "10:00", "closes": "14:00"}, {"day": "fri", "opens": "22:00", "closes": "02:00"}],
}


class Story:
    """Runs commands against one aggregate and keeps the event records the
    processor would have published, in order."""

    def __init__(self, aggregate_id: str, tenant: str = TENANT):
        self.aggregate_id, self.tenant = aggregate_id, tenant
        self.aggregate = None
        self.records: list[tuple[str, dict]] = []

    def only(self, cls, **payload) -> tuple[str, dict]:
        command_id = str(uuid.uuid4())
        meta = CommandMeta(command_id, self.aggregate_id, self.tenant, f"corr-{command_id}", command_id, "test")
        decision = decide(HUB, self.aggregate, cls(meta, **payload))
        assert decision.accepted and len(decision.events) == 1, decision.rejection
        self.aggregate = decision.aggregate
        [domain_event] = decision.events
        name = HUB.event_name(domain_event)
        record = {
            "envelope": {
                "event_id": str(uuid.uuid4()),
                "event_type": name,
                "aggregate_id": self.aggregate_id,
                "aggregate_version": domain_event.originator_version,
                "tenant_id": self.tenant,
                "correlation_id": meta.correlation_id,
                "causation_id": command_id,
                "occurred_at": domain_event.timestamp,
                "actor": "test",
                "previous_hash": "",
            },
            **event_payload(domain_event, EVENT_FIELDS[name]),
        }
        decoded = CODEC.decode(CODEC.encode(name, record))
        self.records.append((decoded.name, decoded.record))
        return decoded.name, decoded.record


def subscription_story(app_id: str | None = None) -> tuple[Story, str]:
    app_id = app_id or str(uuid.uuid4())
    story = Story(subscription_id(TENANT, app_id))
    story.only(SubscribeApp, app_id=app_id)
    return story, app_id


def at(record: dict):
    return record["envelope"]["occurred_at"]


def test_app_registered_inserts_the_app_row_with_its_publisher_channels_and_visibility():
    app_id = str(uuid.uuid4())
    event_type, record = Story(app_id, tenant="platform").only(
        RegisterApp, name="Support bot", kind="bot", channels=["webchat", "messenger"], visibility="public"
    )

    statements = apply(event_type, record)

    assert statements == [
        Statement(
            REGISTER,
            (uuid.UUID(app_id), "platform", "Support bot", "bot", ["messenger", "webchat"], "public", 1, at(record)),
            phase=CREATED,
        )
    ]


def test_app_subscribed_inserts_an_active_subscription_keyed_by_tenant_and_app():
    app_id = str(uuid.uuid4())
    story = Story(subscription_id(TENANT, app_id))

    event_type, record = story.only(SubscribeApp, app_id=app_id)

    assert apply(event_type, record) == [
        Statement(SUBSCRIBE, (TENANT, uuid.UUID(app_id), f"{TENANT}/{app_id}", 1, at(record)), phase=CREATED)
    ]


def test_unsubscribing_and_resubscribing_flip_the_subscription_active_at_their_version():
    story, app_id = subscription_story()
    sub_id = story.aggregate_id

    gone_type, gone = story.only(UnsubscribeApp, app_id=app_id)
    back_type, back = story.only(SubscribeApp, app_id=app_id)

    assert gone_type == "poseidon.app.AppUnsubscribed" and back_type == "poseidon.app.AppResubscribed"
    assert apply(gone_type, gone) == [Statement(SET_ACTIVE, (sub_id, TENANT, False, 2, at(gone)), phase=UPDATED)]
    assert apply(back_type, back) == [Statement(SET_ACTIVE, (sub_id, TENANT, True, 3, at(back)), phase=UPDATED)]


def test_subscription_guards_set_replaces_the_guards_with_business_hours_as_json():
    story, app_id = subscription_story()

    event_type, record = story.only(
        SetSubscriptionGuards, app_id=app_id, channels=["messenger"], page_ids=["77", "66"], business_hours=HOURS
    )

    [statement] = apply(event_type, record)
    assert statement.sql == SET_GUARDS and statement.phase == UPDATED
    sub_id, tenant, channels, page_ids, hours_json, version, when = statement.args
    assert (sub_id, tenant, channels, page_ids, version, when) == (
        story.aggregate_id,
        TENANT,
        ["messenger"],
        ["66", "77"],
        2,
        at(record),
    )
    assert json.loads(hours_json) == {"timezone": "America/New_York", "windows": list(reversed(HOURS["windows"]))}


def test_guards_without_business_hours_store_null_and_empty_lists():
    story, app_id = subscription_story()
    story.only(SetSubscriptionGuards, app_id=app_id, channels=["sms"], page_ids=["1"], business_hours=HOURS)

    event_type, record = story.only(SetSubscriptionGuards, app_id=app_id, channels=[], page_ids=[], business_hours=None)

    [statement] = apply(event_type, record)
    assert statement.args[2:5] == ([], [], None)


SEALED = "sealed.v1.s1-abc.AAAA"


def test_bot_connected_sets_the_subscriptions_webhook_id_and_sealed_secret_at_its_version():
    story, app_id = subscription_story()

    event_type, record = story.only(ConnectBot, app_id=app_id, webhook_id="bot-1", sealed_webhook_secret=SEALED)

    [statement] = apply(event_type, record)
    assert statement.sql == SET_BOT_ROW.sql and statement.phase == UPDATED
    assert statement.args[:5] == (story.aggregate_id, TENANT, "bot-1", SEALED, 2)


def test_every_statement_is_idempotent_on_its_own_inserts_do_nothing_on_conflict_updates_need_a_newer_version():
    assert "ON CONFLICT (app_id) DO NOTHING" in REGISTER
    assert "ON CONFLICT DO NOTHING" in SUBSCRIBE
    for update in (SET_ACTIVE, SET_GUARDS, SET_BOT_ROW.sql):
        assert "AND version < $" in update and "SET" in update


def test_every_app_event_in_the_catalog_has_a_mapping_and_each_statement_names_the_tenant():
    app_id = str(uuid.uuid4())
    publisher = Story(app_id)
    publisher.only(RegisterApp, name="Bot", kind="bot", channels=["sms"], visibility="private")
    story, _ = subscription_story(app_id)
    story.only(SetSubscriptionGuards, app_id=app_id, channels=["sms"], page_ids=[], business_hours=HOURS)
    story.only(ConnectBot, app_id=app_id, webhook_id="bot-1", sealed_webhook_secret=SEALED)
    story.only(UnsubscribeApp, app_id=app_id)
    story.only(SubscribeApp, app_id=app_id)

    records = publisher.records + story.records

    assert sorted({name for name, _ in records}) == sorted(APP_EVENTS)
    for name, record in records:
        statements = apply(name, record)
        assert statements and all(TENANT in s.args for s in statements), name


def test_an_event_the_read_model_does_not_know_is_a_value_error_for_the_dead_letter_topic():
    _, record = Story(str(uuid.uuid4())).only(RegisterApp, name="Bot", kind="bot", channels=["sms"], visibility="private")

    with pytest.raises(ValueError, match="no mapping for poseidon.app.AppRenamed"):
        apply("poseidon.app.AppRenamed", record)


def test_the_projection_reads_the_app_events_topic_and_compares_both_tables_on_replay():
    assert PROJECTION.topics == ("app.events",)
    assert set(PROJECTION.tables) == {"apps", "subscriptions"}
    assert (PROJECTION.migrations / "0001_apps_and_subscriptions.sql").is_file()
