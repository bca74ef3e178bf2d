"""The App hub's aggregates: decide (public verbs, small named checks) and evolve
(the @event methods only assign state). Pure: no I/O.

Two aggregates, one hub. An app and a subscription have different owners: the
app belongs to the tenant that publishes it (the `platform` tenant for first-party
apps), a subscription to the tenant that subscribes — and `infra.hub.decide`
refuses any command whose tenant does not own the aggregate. So they cannot share
one aggregate, and a per-tenant book holding both the apps a tenant publishes and
its subscriptions would mix two owners' concerns, serialise every app operation of
a tenant through one aggregate and make the app id something other than the
aggregate id. Hence:

* `App` — id = the app's UUID (canonical spelling), owned by the publisher;
  `RegisterApp` creates it.
* `Subscription` — id = `"<tenant_id>/<app_id>"` (`subscription_id`), owned by the
  subscribing tenant, one per (tenant, app) by construction; mapped to a UUID with
  uuid5. `SubscribeApp` creates it (or resubscribes), `UnsubscribeApp`,
  `SetSubscriptionGuards`, `ConnectBot` (the tenant's own bot: webhook id and
  sealed webhook secret; saving again rotates them).

Both subclass `AppHubAggregate`, which is what `HubSpec.aggregate` declares. The
shared processor never instantiates that class: it restores whatever class the
stored snapshot names (eventsourcing's snapshot topic), so two concrete classes
work without changing shared code. The two id spaces cannot meet: an app id is a
bare UUID, a subscription id contains a `/`.

What one aggregate cannot see, it does not check: a subscription may name an app
that is unknown, private to another tenant, or lacks a channel its guards allow.
The routing check (`guards.evaluate_subscription`, gRPC `CheckGuards`) refuses
such messages with a named rule, which it must do anyway because apps change
after tenants subscribe."""

from __future__ import annotations

import unicodedata
import uuid
from typing import Any

from eventsourcing.domain import Aggregate, event

from hubs.app.bot import WEBHOOK_ID
from hubs.app.commands import (
    ConnectBot,
    RegisterApp,
    SetSubscriptionGuards,
    SubscribeApp,
    UnsubscribeApp,
    subscription_id,
)
from hubs.app.guards import PRIVATE, PUBLIC, GuardError, Guards, parse_channels
from schemas.contracts import SEALED_PREFIX, AggregateAlreadyExists, Command, InvalidCommand, Rejected

KINDS = ("bot", "integration")
VISIBILITIES = (PRIVATE, PUBLIC)
PLATFORM_TENANT = "platform"
"""The tenant that publishes first-party apps."""
MAX_NAME = 100
MAX_SEALED = 4096
# Fixed forever: subscription UUIDs (eventsourcing ids) derive from it.
SUBSCRIPTION_NAMESPACE = uuid.UUID("6f0f3c1e-52a4-5d0b-9b7e-2d1c8a7e4b10")


class AlreadySubscribed(Rejected):
    pass


class NotSubscribed(Rejected):
    pass


class AppHubAggregate(Aggregate):
    """Base of the App hub's aggregates; every one sets its owning `tenant_id`."""


class App(AppHubAggregate):
    @staticmethod
    def create_id(app_id: str, **_: object) -> uuid.UUID:
        return uuid.UUID(app_id)

    @event("AppRegistered")
    def __init__(self, app_id: str, tenant_id: str, name: str, kind: str, channels: list[str], visibility: str):
        self.tenant_id = tenant_id
        self.name = name
        self.kind = kind
        self.channels = channels
        self.visibility = visibility


class Subscription(AppHubAggregate):
    bot_webhook_id = ""
    bot_sealed_secret = ""
    """Class defaults: subscriptions snapshotted before bot connections existed had none."""

    @staticmethod
    def create_id(subscription_id: str, **_: object) -> uuid.UUID:
        return uuid.uuid5(SUBSCRIPTION_NAMESPACE, subscription_id)

    @event("AppSubscribed")
    def __init__(self, subscription_id: str, tenant_id: str, app_id: str):
        self.tenant_id = tenant_id
        self.app_id = app_id
        self.active = True
        self.channels: list[str] = []
        self.page_ids: list[str] = []
        self.business_hours: dict[str, Any] | None = None

    @property
    def guards(self) -> Guards:
        return Guards.parse(self.channels, self.page_ids, self.business_hours)

    def resubscribe(self) -> None:
        if self.active:
            raise AlreadySubscribed(f"tenant {self.tenant_id} is already subscribed to app {self.app_id}")
        self._resubscribed()

    def unsubscribe(self) -> None:
        check_is_subscribed(self)
        self._unsubscribed()

    def set_guards(self, guards: Guards) -> None:
        check_is_subscribed(self)
        channels, page_ids, business_hours = guards.to_record()
        self._guards_set(channels, page_ids, business_hours)

    def connect_bot(self, webhook_id: str, sealed_webhook_secret: str) -> None:
        check_is_subscribed(self)
        check_webhook_id(webhook_id)
        check_sealed(sealed_webhook_secret, "sealed_webhook_secret")
        self._bot_connected(webhook_id, sealed_webhook_secret)

    # Guards survive an unsubscription: resubscribing resumes with them, which is
    # what pausing an app and resuming it later wants.
    @event("AppResubscribed")
    def _resubscribed(self) -> None:
        self.active = True

    @event("AppUnsubscribed")
    def _unsubscribed(self) -> None:
        self.active = False

    @event("SubscriptionGuardsSet")
    def _guards_set(self, channels: list[str], page_ids: list[str], business_hours: dict[str, Any] | None) -> None:
        self.channels = channels
        self.page_ids = page_ids
        self.business_hours = business_hours

    @event("BotConnected")
    def _bot_connected(self, webhook_id: str, sealed_webhook_secret: str) -> None:
        self.bot_webhook_id, self.bot_sealed_secret = webhook_id, sealed_webhook_secret


def check_webhook_id(webhook_id: str) -> None:
    if not isinstance(webhook_id, str) or not WEBHOOK_ID.match(webhook_id):
        raise InvalidCommand(f"webhook_id must be 1 to 128 of A-Z a-z 0-9 _ -, not {str(webhook_id)[:140]!r}")


def check_sealed(value: str, field: str) -> None:
    # Never a clear secret in the log: only what infra/sealing.py made.
    if not isinstance(value, str) or not value.startswith(SEALED_PREFIX) or len(value) > MAX_SEALED:
        raise InvalidCommand(f"{field} must be a sealed value ({SEALED_PREFIX}…), never a clear secret")


def check_is_subscribed(subscription: Subscription) -> None:
    if not subscription.active:
        raise NotSubscribed(f"tenant {subscription.tenant_id} unsubscribed from app {subscription.app_id}")


def check_uuid(value: str, field: str) -> None:
    # Only the canonical spelling: the id is also the Kafka key and the table key,
    # so two spellings of one UUID would otherwise be two apps.
    try:
        canonical = str(uuid.UUID(value))
    except (ValueError, TypeError, AttributeError):
        raise InvalidCommand(f"{field} must be a UUID, not {value!r}") from None
    if canonical != value:
        raise InvalidCommand(f"{field} must be a lower-case hyphenated UUID ({canonical}), not {value!r}")


def check_name(name: str) -> None:
    if not isinstance(name, str) or not name.strip() or name != name.strip():
        raise InvalidCommand(f"name must be non-blank without surrounding spaces, not {name!r}")
    if len(name) > MAX_NAME:
        raise InvalidCommand(f"name has {len(name)} characters; at most {MAX_NAME}")
    if any(unicodedata.category(c).startswith("C") for c in name):
        raise InvalidCommand("name must not contain control characters")


def check_one_of(value: str, allowed: tuple[str, ...], field: str) -> None:
    if value not in allowed:
        raise InvalidCommand(f"{field} must be one of {', '.join(allowed)}, not {value!r}")


def check_subscription_id(aggregate_id: str, tenant_id: str, app_id: str) -> None:
    if not tenant_id:
        raise InvalidCommand("a subscription needs the subscribing tenant's id")
    expected = subscription_id(tenant_id, app_id)
    if aggregate_id != expected:
        raise InvalidCommand(f"the subscription of tenant {tenant_id} to app {app_id} has aggregate id {expected!r}")


def register(command: RegisterApp) -> App:
    meta = command.meta
    check_uuid(meta.aggregate_id, "app id")
    check_name(command.name)
    check_one_of(command.kind, KINDS, "kind")
    check_one_of(command.visibility, VISIBILITIES, "visibility")
    try:
        channels = parse_channels(command.channels, "channels", allow_empty=False)
    except GuardError as exc:
        raise InvalidCommand(str(exc)) from None
    return App(
        app_id=meta.aggregate_id,
        tenant_id=meta.tenant_id,
        name=command.name,
        kind=command.kind,
        channels=sorted(channels),
        visibility=command.visibility,
    )


def handle(aggregate: AppHubAggregate | None, command: Command) -> AppHubAggregate:
    """The one handler of every App hub command: returns the aggregate with its new
    pending events, or raises a Rejected subclass before changing anything."""
    meta = command.meta
    if isinstance(command, RegisterApp):
        if aggregate is not None:
            raise AggregateAlreadyExists(f"app {meta.aggregate_id} is already registered")
        return register(command)
    if not isinstance(command, SubscribeApp | UnsubscribeApp | SetSubscriptionGuards | ConnectBot):
        raise InvalidCommand(f"the app hub has no handler for {type(command).__name__}")

    check_uuid(command.app_id, "app_id")
    check_subscription_id(meta.aggregate_id, meta.tenant_id, command.app_id)
    if aggregate is not None and not isinstance(aggregate, Subscription):
        raise InvalidCommand(f"{meta.aggregate_id} is not a subscription")  # unreachable: the id spaces are disjoint
    if isinstance(command, SubscribeApp):
        if aggregate is None:
            return Subscription(subscription_id=meta.aggregate_id, tenant_id=meta.tenant_id, app_id=command.app_id)
        aggregate.resubscribe()
        return aggregate
    if aggregate is None:
        raise NotSubscribed(f"tenant {meta.tenant_id} is not subscribed to app {command.app_id}")
    if isinstance(command, UnsubscribeApp):
        aggregate.unsubscribe()
    elif isinstance(command, ConnectBot):
        aggregate.connect_bot(command.webhook_id, command.sealed_webhook_secret)
    else:
        try:
            guards = Guards.parse(command.channels, command.page_ids, command.business_hours)
        except GuardError as exc:
            raise InvalidCommand(str(exc)) from None
        aggregate.set_guards(guards)
    return aggregate
