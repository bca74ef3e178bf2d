"""The App hub's rules as given / when / then over `infra.hub.decide`, the same
pure step the aggregate processor runs: registering apps, subscribing,
unsubscribing, setting guards, and the shared rules (tenant, expected version).
Also the two-aggregate design's one assumption about the shared machinery: a
snapshot restores the concrete class. No broker, no database."""

from __future__ import annotations

import uuid

import pytest

from hubs.app.aggregate import MAX_NAME, PLATFORM_TENANT, App, Subscription, handle
from hubs.app.commands import (
    COMMANDS,
    ConnectBot,
    RegisterApp,
    SetSubscriptionGuards,
    SubscribeApp,
    UnsubscribeApp,
    subscription_id,
)
from hubs.app.guards import Guards
from hubs.app.hub import HUB
from hubs.wallet.commands import OpenWallet
from infra.hub import SnapshotCodec, command_from_record, command_to_record
from schemas.codec import Catalog, Codec
from schemas.contracts import CommandMeta, InvalidCommand
from tests.unit.given_when_then import Fact, Hub, given, happened, only_event, then_rejected

TENANT = "tenant-a"
OTHER_TENANT = "tenant-b"
PARIS_OFFICE = {"timezone": "Europe/Paris", "windows": [{"day": "mon", "opens": "09:00", "closes": "17:00"}]}


def meta(aggregate_id: str, *, tenant: str = TENANT, expected_version: int | None = None) -> CommandMeta:
    command_id = str(uuid.uuid4())
    return CommandMeta(
        command_id=command_id,
        aggregate_id=aggregate_id,
        tenant_id=tenant,
        correlation_id=command_id,
        causation_id=command_id,
        actor="test",
        expected_version=expected_version,
    )


class Publisher:
    """Builds RegisterApp commands for one app id."""

    def __init__(self, tenant: str = PLATFORM_TENANT, app_id: str | None = None):
        self.tenant = tenant
        self.app_id = str(uuid.uuid4()) if app_id is None else app_id

    def register(self, name="Support bot", kind="bot", channels=("messenger", "webchat"), visibility="public", **m):
        return RegisterApp(
            meta(self.app_id, tenant=m.pop("tenant", self.tenant), **m),
            name=name,
            kind=kind,
            channels=list(channels),
            visibility=visibility,
        )

    # -- what happened to the app, for `given` (channels in their canonical, sorted order) --

    def registered(self, name="Support bot", kind="bot", channels=("messenger", "webchat"), visibility="public") -> Fact:
        return happened(
            App.AppRegistered,
            app_id=self.app_id,
            tenant_id=self.tenant,
            name=name,
            kind=kind,
            channels=sorted(channels),
            visibility=visibility,
        )


SEALED = "sealed.v1.s1-abc.AAAA"


class Subscriber:
    """Builds subscription commands of one tenant for one app."""

    def __init__(self, tenant: str = TENANT, app_id: str | None = None):
        self.tenant = tenant
        self.app_id = str(uuid.uuid4()) if app_id is None else app_id
        self.id = subscription_id(tenant, self.app_id)

    def _meta(self, m: dict) -> CommandMeta:
        return meta(m.pop("aggregate_id", self.id), tenant=m.pop("tenant", self.tenant), **m)

    def subscribe(self, **m) -> SubscribeApp:
        return SubscribeApp(self._meta(m), app_id=m.pop("app_id", self.app_id))

    def unsubscribe(self, **m) -> UnsubscribeApp:
        return UnsubscribeApp(self._meta(m), app_id=self.app_id)

    def connect_bot(self, webhook_id="bot-acme", sealed=SEALED, **m) -> ConnectBot:
        return ConnectBot(self._meta(m), app_id=self.app_id, webhook_id=webhook_id, sealed_webhook_secret=sealed)

    def guard(self, channels=(), page_ids=(), business_hours=None, **m) -> SetSubscriptionGuards:
        return SetSubscriptionGuards(
            self._meta(m), app_id=self.app_id, channels=list(channels), page_ids=list(page_ids), business_hours=business_hours
        )

    # -- what happened to the subscription, for `given` --

    def subscribed(self) -> Fact:
        return happened(Subscription.AppSubscribed, subscription_id=self.id, tenant_id=self.tenant, app_id=self.app_id)

    def unsubscribed(self) -> Fact:
        return happened(Subscription.AppUnsubscribed)

    def guarded(self, channels=(), page_ids=(), business_hours=None) -> Fact:
        """SubscriptionGuardsSet, which records the guards in their canonical order."""
        channels, page_ids, business_hours = Guards.parse(channels, page_ids, business_hours).to_record()
        return happened(Subscription.SubscriptionGuardsSet, channels=channels, page_ids=page_ids, business_hours=business_hours)


when = Hub(HUB).when


# -- a subscription's own bot ----------------------------------------------------


def test_connecting_a_bot_records_its_webhook_id_and_sealed_secret_on_the_subscription():
    s = Subscriber()
    decision = when(given(s.subscribed()), s.connect_bot())

    assert HUB.event_name(only_event(decision)) == "poseidon.app.BotConnected"
    assert (decision.aggregate.bot_webhook_id, decision.aggregate.bot_sealed_secret) == ("bot-acme", SEALED)


def test_connecting_again_rotates_the_bot_connection():
    s = Subscriber()
    subscription = given(s.subscribed(), happened(Subscription.BotConnected, webhook_id="old", sealed_webhook_secret=SEALED))

    decision = when(subscription, s.connect_bot("new", SEALED + "B"))

    assert (decision.aggregate.bot_webhook_id, decision.aggregate.bot_sealed_secret) == ("new", SEALED + "B")


def test_a_clear_secret_or_a_bad_webhook_id_is_never_recorded():
    s = Subscriber()
    then_rejected(when(given(s.subscribed()), s.connect_bot(sealed="hunter2-clear")), "InvalidCommand", "never a clear secret")
    then_rejected(when(given(s.subscribed()), s.connect_bot(webhook_id="a/b")), "InvalidCommand", "webhook_id")


def test_a_bot_is_connected_only_to_an_active_subscription_of_the_tenant_itself():
    s = Subscriber()
    then_rejected(when(None, s.connect_bot()), "NotSubscribed")
    then_rejected(when(given(s.subscribed(), s.unsubscribed()), s.connect_bot()), "NotSubscribed")
    then_rejected(when(given(s.subscribed()), s.connect_bot(tenant=OTHER_TENANT)), "TenantMismatch")


# -- registering apps ----------------------------------------------------------


def test_registering_an_app_records_app_registered_owned_by_the_publishing_tenant():
    p = Publisher(tenant=TENANT)

    decision = when(
        None, p.register(name="Odoo CRM", kind="integration", channels=["webchat", "messenger"], visibility="private")
    )

    event = only_event(decision)
    assert HUB.event_name(event) == "poseidon.app.AppRegistered"
    assert (event.name, event.kind, event.channels, event.visibility) == (
        "Odoo CRM",
        "integration",
        ["messenger", "webchat"],
        "private",
    )
    assert event.originator_id == uuid.UUID(p.app_id) and event.originator_version == 1
    app = decision.aggregate
    assert isinstance(app, App) and app.tenant_id == TENANT


def test_a_first_party_app_is_registered_by_the_platform_tenant():
    decision = when(None, Publisher(tenant=PLATFORM_TENANT).register(visibility="public"))

    only_event(decision, "AppRegistered")
    app = decision.aggregate
    assert (app.tenant_id, app.visibility) == (PLATFORM_TENANT, "public")


def test_an_app_registered_without_a_visibility_is_private():
    p = Publisher()
    command = RegisterApp(meta(p.app_id, tenant=PLATFORM_TENANT), name="Bot", kind="bot", channels=["sms"])

    assert only_event(when(None, command)).visibility == "private"


@pytest.mark.parametrize(
    ("app_id", "says"),
    [
        ("not-a-uuid", "app id must be a UUID"),
        ("", "app id must be a UUID"),
        ("5F0C4E2A-8B1D-4C3E-9F6A-7B8C9D0E1F2A", "lower-case hyphenated"),
        ("5f0c4e2a8b1d4c3e9f6a7b8c9d0e1f2a", "lower-case hyphenated"),
    ],
)
def test_registering_an_app_whose_id_is_not_a_canonical_uuid_is_invalid(app_id, says):
    then_rejected(when(None, Publisher(app_id=app_id).register()), "InvalidCommand", says)


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"name": ""}, "name must be non-blank"),
        ({"name": "   "}, "name must be non-blank"),
        ({"name": " Bot"}, "without surrounding spaces"),
        ({"name": "x" * (MAX_NAME + 1)}, f"at most {MAX_NAME}"),
        ({"name": "Bot\x00"}, "control characters"),
        ({"kind": "robot"}, "kind must be one of bot, integration"),
        ({"kind": "Bot"}, "kind must be one of bot, integration"),
        ({"visibility": "secret"}, "visibility must be one of private, public"),
        ({"channels": []}, "channels must name at least one channel"),
        ({"channels": ["messenger", "fax"]}, "unknown channel 'fax'"),
        ({"channels": ["sms", "sms"]}, "lists 'sms' twice"),
    ],
)
def test_registering_an_app_with_a_bad_field_is_invalid_with_a_reason_naming_it(fields, says):
    then_rejected(when(None, Publisher().register(**fields)), "InvalidCommand", says)


def test_a_name_of_exactly_the_maximum_length_in_any_script_is_accepted():
    assert only_event(when(None, Publisher().register(name="ボ" * MAX_NAME))).name == "ボ" * MAX_NAME


def test_registering_an_app_id_twice_is_refused_as_already_existing():
    p = Publisher()
    app = given(p.registered())

    then_rejected(when(app, p.register(name="Another")), "AggregateAlreadyExists", p.app_id)


def test_another_tenant_cannot_register_over_an_existing_app():
    p = Publisher(tenant=TENANT)
    app = given(p.registered())

    then_rejected(when(app, p.register(tenant=OTHER_TENANT)), "TenantMismatch")


# -- subscribing ---------------------------------------------------------------


def test_subscribing_records_app_subscribed_for_the_tenant_with_no_guards():
    s = Subscriber()

    decision = when(None, s.subscribe())

    event = only_event(decision)
    assert HUB.event_name(event) == "poseidon.app.AppSubscribed"
    assert event.app_id == s.app_id
    assert event.originator_id == Subscription.create_id(s.id) and event.originator_version == 1
    subscription = decision.aggregate
    assert isinstance(subscription, Subscription)
    assert (subscription.tenant_id, subscription.active, subscription.guards) == (TENANT, True, Guards())


def test_the_subscription_id_is_the_tenant_and_app_id_and_maps_to_one_uuid():
    s = Subscriber(tenant="acme", app_id="0b7f0e0c-3f57-4d8f-9a44-3c1f0a6b2d11")

    assert s.id == "acme/0b7f0e0c-3f57-4d8f-9a44-3c1f0a6b2d11"
    assert Subscription.create_id(s.id) == Subscription.create_id("acme/0b7f0e0c-3f57-4d8f-9a44-3c1f0a6b2d11")
    assert Subscription.create_id(s.id) != Subscription.create_id(subscription_id("other", s.app_id))


@pytest.mark.parametrize(
    "aggregate_id",
    [
        "tenant-b/{app}",  # another tenant's subscription id
        "{app}",  # the app's own id
        "tenant-a/{other}",  # another app
        "tenant-a/{upper}",  # a second spelling of the same app
    ],
)
def test_a_subscription_command_whose_aggregate_id_is_not_tenant_slash_app_is_invalid_naming_the_right_id(aggregate_id):
    s = Subscriber()
    wrong = aggregate_id.format(app=s.app_id, other=uuid.uuid4(), upper=s.app_id.upper())

    decision = when(None, s.subscribe(aggregate_id=wrong))

    then_rejected(decision, "InvalidCommand", f"has aggregate id '{s.id}'")


def test_subscribing_to_an_app_id_that_is_not_a_canonical_uuid_is_invalid():
    s = Subscriber(app_id="crm-bot")

    then_rejected(when(None, s.subscribe()), "InvalidCommand", "app_id must be a UUID")


def test_subscribing_without_a_tenant_is_invalid():
    s = Subscriber(tenant="")

    then_rejected(when(None, s.subscribe()), "InvalidCommand", "subscribing tenant")


def test_subscribing_twice_is_refused_as_already_subscribed():
    s = Subscriber()
    subscription = given(s.subscribed())

    then_rejected(when(subscription, s.subscribe()), "AlreadySubscribed", s.app_id)


def test_unsubscribing_records_app_unsubscribed_and_the_subscription_is_inactive():
    s = Subscriber()
    subscription = given(s.subscribed())

    decision = when(subscription, s.unsubscribe())

    assert HUB.event_name(only_event(decision)) == "poseidon.app.AppUnsubscribed"
    assert decision.aggregate.active is False and decision.version == 2


def test_unsubscribing_twice_or_without_ever_subscribing_is_refused_as_not_subscribed():
    s = Subscriber()

    then_rejected(when(None, s.unsubscribe()), "NotSubscribed", "is not subscribed")
    then_rejected(when(given(s.subscribed(), s.unsubscribed()), s.unsubscribe()), "NotSubscribed", "unsubscribed from")


def test_subscribing_again_after_unsubscribing_records_app_resubscribed_and_keeps_the_guards():
    s = Subscriber()
    subscription = given(s.subscribed(), s.guarded(channels=["messenger"], business_hours=PARIS_OFFICE), s.unsubscribed())

    decision = when(subscription, s.subscribe())

    assert HUB.event_name(only_event(decision)) == "poseidon.app.AppResubscribed"
    assert decision.aggregate.active is True and decision.version == 4
    assert decision.aggregate.guards == Guards.parse(["messenger"], [], PARIS_OFFICE)


def test_another_tenant_cannot_unsubscribe_or_guard_a_tenants_subscription():
    s = Subscriber(tenant=TENANT)
    subscription = given(s.subscribed())

    then_rejected(when(subscription, s.unsubscribe(tenant=OTHER_TENANT)), "TenantMismatch")
    then_rejected(when(subscription, s.guard(channels=["sms"], tenant=OTHER_TENANT)), "TenantMismatch")


# -- guards ----------------------------------------------------------------------


def test_setting_guards_records_them_in_canonical_order():
    s = Subscriber()
    subscription = given(s.subscribed())
    hours = {
        "timezone": "Europe/Paris",
        "windows": [{"day": "fri", "opens": "22:00", "closes": "02:00"}, {"day": "mon", "opens": "09:00", "closes": "17:00"}],
    }

    decision = when(subscription, s.guard(channels=["webchat", "messenger"], page_ids=["222", "111"], business_hours=hours))

    event = only_event(decision)
    assert HUB.event_name(event) == "poseidon.app.SubscriptionGuardsSet"
    assert event.channels == ["messenger", "webchat"]
    assert event.page_ids == ["111", "222"]
    assert event.business_hours == {"timezone": "Europe/Paris", "windows": list(reversed(hours["windows"]))}
    assert decision.aggregate.guards == Guards.parse(["messenger", "webchat"], ["111", "222"], hours)


def test_setting_empty_guards_lifts_every_restriction():
    s = Subscriber()
    subscription = given(s.subscribed(), s.guarded(channels=["sms"], page_ids=["1"], business_hours=PARIS_OFFICE))

    decision = when(subscription, s.guard())

    event = only_event(decision)
    assert (event.channels, event.page_ids, event.business_hours) == ([], [], None)
    assert decision.aggregate.guards == Guards()


@pytest.mark.parametrize(
    ("guards", "says"),
    [
        ({"channels": ["telepathy"]}, "channels: unknown channel 'telepathy'"),
        ({"page_ids": ["no spaces please"]}, "page_ids: 'no spaces please' is not a page id"),
        ({"business_hours": {"timezone": "Europe/Pariss", "windows": PARIS_OFFICE["windows"]}}, "business_hours.timezone"),
        (
            {"business_hours": {"timezone": "UTC", "windows": [{"day": "mon", "opens": "17:00", "closes": "17:00"}]}},
            "business_hours.windows[0] opens and closes at the same time",
        ),
        (
            {"business_hours": {"timezone": "UTC", "windows": [{"day": "someday", "opens": "09:00", "closes": "17:00"}]}},
            "business_hours.windows[0].day",
        ),
        ({"business_hours": {"timezone": "UTC", "windows": []}}, "never allow a message"),
    ],
)
def test_bad_guards_are_invalid_with_the_reason_naming_the_field_and_change_nothing(guards, says):
    s = Subscriber()
    subscription = given(s.subscribed())

    decision = when(subscription, s.guard(**guards))

    then_rejected(decision, "InvalidCommand", says)
    assert decision.aggregate.guards == Guards() and decision.version == 1


def test_guards_cannot_be_set_on_a_subscription_that_does_not_exist_or_was_unsubscribed():
    s = Subscriber()

    then_rejected(when(None, s.guard(channels=["sms"])), "NotSubscribed")
    then_rejected(when(given(s.subscribed(), s.unsubscribed()), s.guard(channels=["sms"])), "NotSubscribed")


def test_an_expected_version_that_is_not_the_subscriptions_is_a_version_conflict():
    s = Subscriber()
    subscription = given(s.subscribed(), s.guarded(channels=["sms"]))

    then_rejected(when(subscription, s.guard(channels=["email"], expected_version=1)), "VersionConflict", "at 2")
    assert when(subscription, s.guard(channels=["email"], expected_version=2)).accepted


# -- the handler's edges ---------------------------------------------------------


def test_a_command_of_another_hub_has_no_handler_here():
    command = OpenWallet(meta(str(uuid.uuid4())), currency="EUR")

    with pytest.raises(InvalidCommand, match="no handler for OpenWallet"):
        handle(None, command)


def test_a_subscription_command_never_operates_on_an_app_aggregate():
    # Unreachable through real ids (an app id has no '/'), but the handler does not rely on that alone.
    s = Subscriber()
    app = given(Publisher(tenant=TENANT, app_id=s.app_id).registered())

    with pytest.raises(InvalidCommand, match="is not a subscription"):
        handle(app, s.unsubscribe())


# -- what the processor relies on --------------------------------------------------


def test_a_snapshot_restores_each_aggregate_as_its_own_class_with_its_state():
    codec = SnapshotCodec()
    s = Subscriber()
    app = given(Publisher(app_id=s.app_id).registered())
    subscription = given(s.subscribed(), s.guarded(channels=["messenger"], page_ids=["9"], business_hours=PARIS_OFFICE))

    restored_app, app_hash = codec.loads(codec.dumps(app, "h1"))
    restored_sub, sub_hash = codec.loads(codec.dumps(subscription, "h2"))

    assert type(restored_app) is App and type(restored_sub) is Subscription
    assert (app_hash, sub_hash) == ("h1", "h2")
    assert (restored_app.name, restored_app.channels, restored_app.version) == (app.name, app.channels, 1)
    assert restored_sub.guards == subscription.guards and restored_sub.version == 2
    # and the restored aggregate goes on deciding
    assert HUB.event_name(only_event(when(restored_sub, s.unsubscribe()))) == "poseidon.app.AppUnsubscribed"


def test_every_command_survives_its_avro_record_through_the_codec():
    codec = Codec(Catalog.load())
    s = Subscriber()
    commands = [
        Publisher().register(),
        s.subscribe(),
        s.unsubscribe(),
        s.guard(channels=["sms"], page_ids=["1", "2"], business_hours=PARIS_OFFICE),
        s.guard(),
        s.connect_bot(),
    ]
    assert {type(c) for c in commands} == set(COMMANDS)

    for command in commands:
        decoded = codec.decode(codec.encode(command.avro_name(), command_to_record(command)))
        back = command_from_record(HUB, decoded.name, decoded.record)
        assert type(back) is type(command) and back.payload() == command.payload()
        assert back.meta.aggregate_id == command.meta.aggregate_id  # (issued_at keeps milliseconds only)
