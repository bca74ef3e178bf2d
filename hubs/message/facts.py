"""The Message Hub's own projection of the facts a routing decision reads — pure,
no I/O: which tenant owns a channel account, each tenant's subscriptions and
their guards, the apps, each tenant's billing terms and open wallets, folded
from the Tenant, App, Billing and Wallet hubs' events in log order
(hubs/message/feed.py feeds it from Kafka).

It answers what the hubs' gRPC queries answered (ResolveChannel, ListSubscriptions
+ CheckGuards + GetApp, CheckEntitlement + GetQuota, the Wallet read store's open
wallet) with the very same pure rules (`hubs.app.guards.evaluate_subscription`,
`hubs.billing.answers`), so the router decides without a remote lookup
and the decision is the one the hubs' read models would have given at the
same positions of the log. Only what routing reads is kept: a few small rows per
tenant, never a message, a movement or a member.

Every other event of those topics is skipped by its `event_type` header before
it is decoded (`WANTED`): the wallet topic carries a reservation and a capture
per message, and the router reads it only for WalletOpened / WalletClosed."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from hubs.app.guards import AppFacts, Guards, SubscriptionFacts, evaluate_subscription
from hubs.billing import answers
from hubs.message.routing import MESSAGING_FEATURE, BillingVerdict, ChannelOwner, InboundItem, RoutingFacts, SubscriptionVerdict
from hubs.tenant.aggregate import ACCOUNT_ID

WANTED: Mapping[str, frozenset[str]] = {
    "tenant.events": frozenset({"ChannelConnected", "ChannelReconnected", "ChannelDisconnected", "ChannelMoved"}),
    "app.events": frozenset({"AppRegistered", "AppSubscribed", "AppResubscribed", "AppUnsubscribed", "SubscriptionGuardsSet"}),
    "billing.events": frozenset({"EntitlementGranted", "EntitlementChanged", "EntitlementCancelled", "UsageReported"}),
    "wallet.events": frozenset({"WalletOpened", "WalletClosed"}),
}
"""Logical topic → the events (short names) routing reads from it."""
TOPICS = tuple(WANTED)


def wanted(topic: str, event_type: str) -> bool:
    """Is this event (full Avro name, from the `event_type` header) one routing reads?"""
    return event_type.rsplit(".", 1)[-1] in WANTED.get(topic, ())


@dataclass
class _Subscription:
    app_id: str
    active: bool
    guards: Guards


@dataclass(frozen=True)
class _App:
    facts: AppFacts
    kind: str


class RoutingView:
    """The routing facts as of the events applied so far. `apply` each wanted
    event of the four topics in the order of its partition (one aggregate's
    events are in one partition, in order: no version guard is needed on a view
    built from the start of the log)."""

    def __init__(self) -> None:
        self.channels: dict[tuple[str, str], ChannelOwner] = {}
        self.apps: dict[str, _App] = {}
        self.subscriptions: dict[str, dict[str, _Subscription]] = {}
        """tenant → subscription id → subscription."""
        self.terms: dict[str, answers.Terms] = {}
        self.wallets: dict[str, dict[str, datetime]] = {}
        """tenant → open wallet id → opened at."""
        self.applied = 0

    def apply(self, topic: str, event_type: str, record: Mapping[str, Any]) -> None:
        """Fold one event. Raises KeyError/TypeError/ValueError on a record that does
        not have the fields its schema promises (the feed logs and skips it)."""
        kind = event_type.rsplit(".", 1)[-1]
        if kind not in WANTED.get(topic, ()):
            return
        env = record["envelope"]
        tenant, aggregate = env["tenant_id"], env["aggregate_id"]
        if kind in ("ChannelConnected", "ChannelReconnected", "ChannelDisconnected"):
            self.channels[(record["channel"], record["account_id"])] = ChannelOwner(tenant, kind != "ChannelDisconnected")
        elif kind == "ChannelMoved":
            # Recorded under the old owner; the new owner's ChannelReconnected follows. In between
            # the account is the new owner's, not connected yet: nothing routes to the old owner.
            self.channels[(record["channel"], record["account_id"])] = ChannelOwner(record["to_tenant_id"], False)
        elif kind == "AppRegistered":
            facts = AppFacts(tenant, record["visibility"], frozenset(record["channels"]))
            self.apps[aggregate] = _App(facts, record["kind"])
        elif kind == "AppSubscribed":
            self.subscriptions.setdefault(tenant, {})[aggregate] = _Subscription(record["app_id"], True, Guards())
        elif kind in ("AppResubscribed", "AppUnsubscribed"):
            if (sub := self.subscriptions.get(tenant, {}).get(aggregate)) is not None:
                sub.active = kind == "AppResubscribed"
        elif kind == "SubscriptionGuardsSet":
            if (sub := self.subscriptions.get(tenant, {}).get(aggregate)) is not None:
                sub.guards = Guards.parse(record["channels"], record["page_ids"], record["business_hours"])
        elif kind in ("EntitlementGranted", "EntitlementChanged"):
            used = record["used_in_period"] if kind == "EntitlementChanged" else 0
            self.terms[tenant] = answers.Terms(
                record["plan"], record["message_quota"], record["period_start"], record["period_end"],
                tuple(record["features"]), "active", used,
            )  # fmt: skip
        elif kind == "EntitlementCancelled":
            if (terms := self.terms.get(tenant)) is not None:
                self.terms[tenant] = dataclasses.replace(terms, status="cancelled")
        elif kind == "UsageReported":
            if (terms := self.terms.get(tenant)) is not None:
                self.terms[tenant] = dataclasses.replace(terms, reported_used=record["used_after"])
        elif kind == "WalletOpened":
            self.wallets.setdefault(tenant, {})[aggregate] = env["occurred_at"]
        elif kind == "WalletClosed":
            self.wallets.get(tenant, {}).pop(aggregate, None)
        self.applied += 1

    # -- the answers ---------------------------------------------------------------

    def owner(self, channel: str, account_id: str) -> ChannelOwner | None:
        if not ACCOUNT_ID.match(account_id):
            return None  # no tenant can have connected an id the registry refuses
        return self.channels.get((channel, account_id))

    def gather(self, item: InboundItem, now: datetime) -> RoutingFacts:
        """The facts `decide_route` reads for `item`; billing is judged at `now`,
        guards at the item's own time (as CheckGuards was asked)."""
        owner = self.owner(item.channel, item.account_id)
        if owner is None or not owner.connected:
            return RoutingFacts(owner)
        tenant = owner.tenant_id
        verdicts = []
        for sub in sorted(self.subscriptions.get(tenant, {}).values(), key=lambda s: s.app_id):
            if not sub.active:
                continue
            app = self.apps.get(sub.app_id)
            guard = evaluate_subscription(
                tenant,
                sub.app_id,
                app.facts if app is not None else None,
                SubscriptionFacts(sub.active, sub.guards),
                item.guard_channel,
                item.account_id,
                item.received_at,
            )
            kind = app.kind if app is not None and guard.allowed else ""
            verdicts.append(SubscriptionVerdict(sub.app_id, kind, guard))
        return RoutingFacts(owner, tuple(verdicts), self.billing(tenant, now), self.wallet_of(tenant))

    def billing(self, tenant: str, now: datetime) -> BillingVerdict:
        terms = self.terms.get(tenant)
        entitled, reason = answers.check(terms, MESSAGING_FEATURE, now)
        if not entitled:
            return BillingVerdict(False, reason, 0, reason)
        assert terms is not None
        quota = answers.quota(terms, now)
        return BillingVerdict(True, reason, quota.remaining, quota.reason)

    def wallet_of(self, tenant: str) -> str:
        """The tenant's open wallet (the oldest, if several; ties by id), or ''."""
        open_wallets = self.wallets.get(tenant)
        if not open_wallets:
            return ""
        return min(open_wallets.items(), key=lambda item: (item[1], item[0]))[0]
