"""The Message Hub's own projection of the routing facts (hubs/message/facts.py):
folded from the hubs' events, it answers what the Tenant, App, Billing and Wallet
read models answered over gRPC — owner, active subscriptions with their guard
verdicts, entitlement and quota, the oldest open wallet — and ignores every event
routing does not read."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from hubs.app.guards import APP_UNAVAILABLE, CHANNEL_NOT_SUPPORTED_BY_APP, GUARDS_PASSED, OUTSIDE_BUSINESS_HOURS
from hubs.message.facts import RoutingView, wanted
from hubs.message.routing import ROUTED, InboundItem, decide_route

NOW = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)  # a Monday
PAGE = "104857600123"
BOT, AGENT_APP = str(uuid.UUID(int=1)), str(uuid.UUID(int=2))


def event(event_name: str, tenant: str, aggregate: str, at: datetime = NOW, **fields) -> tuple[str, dict]:
    envelope = {"tenant_id": tenant, "aggregate_id": aggregate, "occurred_at": at, "event_id": str(uuid.uuid4())}
    return event_name, {"envelope": envelope, **fields}


def fold(view: RoutingView, topic: str, *events: tuple[str, dict]) -> RoutingView:
    for kind, record in events:
        view.apply(topic, f"poseidon.{topic.split('.')[0]}.{kind}", record)
    return view


def item(at: datetime = NOW, account: str = PAGE) -> InboundItem:
    return InboundItem("facebook", account, "psid-1", at)


def acme(**guards) -> RoutingView:
    """acme: page connected, a public bot subscribed (with `guards`), entitled to messaging with 10 messages."""
    view = RoutingView()
    fold(view, "tenant.events", event("ChannelConnected", "acme", "ch-1", channel="facebook", account_id=PAGE))
    fold(
        view,
        "app.events",
        event("AppRegistered", "platform", BOT, name="Bot", kind="bot", channels=["messenger"], visibility="public"),
        event("AppSubscribed", "acme", "sub-bot", app_id=BOT),
    )
    if guards:
        hours = guards.get("business_hours")
        guards_set = event("SubscriptionGuardsSet", "acme", "sub-bot", channels=[], page_ids=[], business_hours=hours)
        fold(view, "app.events", guards_set)
    fold(
        view,
        "billing.events",
        event(
            "EntitlementGranted", "acme", "ent-1", plan="pro", message_quota=10, period_start=NOW - timedelta(days=1),
            period_end=NOW + timedelta(days=30), features=["messaging"],
        ),
    )  # fmt: skip
    return view


def test_a_connected_page_with_a_subscribed_bot_and_an_entitlement_is_routed_to_the_bot():
    view = acme()

    facts = view.gather(item(), NOW)
    decision = decide_route(item(), facts)

    assert (decision.rule, decision.tenant_id, decision.app_id, decision.spoke) == (ROUTED, "acme", BOT, "botpress")
    assert facts.billing.quota_remaining == 10 and facts.subscriptions[0].guard.rule == GUARDS_PASSED


def test_a_page_nobody_connected_has_no_owner_and_a_disconnected_one_says_so():
    view = acme()
    assert view.gather(item(account="999"), NOW).owner is None
    assert view.owner("facebook", "not a page id!") is None

    fold(view, "tenant.events", event("ChannelDisconnected", "acme", "ch-1", channel="facebook", account_id=PAGE))
    assert view.owner("facebook", PAGE).connected is False
    fold(view, "tenant.events", event("ChannelReconnected", "acme", "ch-1", channel="facebook", account_id=PAGE))
    assert view.owner("facebook", PAGE).connected is True


def test_a_moved_page_routes_to_its_old_owner_no_more_and_to_the_new_one_once_it_is_reconnected_there():
    view = acme()
    moved = event(
        "ChannelMoved", "acme", "ch-1", channel="facebook", account_id=PAGE, from_tenant_id="acme", to_tenant_id="zenith",
        proof="facebook_login",
    )  # fmt: skip
    fold(view, "tenant.events", moved)
    assert (view.owner("facebook", PAGE).tenant_id, view.owner("facebook", PAGE).connected) == ("zenith", False)
    assert decide_route(item(), view.gather(item(), NOW)).tenant_id == "zenith"  # refused there, never acme's bot
    fold(view, "tenant.events", event("ChannelReconnected", "zenith", "ch-1", channel="facebook", account_id=PAGE))
    assert (view.owner("facebook", PAGE).tenant_id, view.owner("facebook", PAGE).connected) == ("zenith", True)


def test_an_unsubscribed_app_is_not_a_candidate_and_a_resubscribed_one_is_again():
    view = fold(acme(), "app.events", event("AppUnsubscribed", "acme", "sub-bot"))
    assert view.gather(item(), NOW).subscriptions == ()

    fold(view, "app.events", event("AppResubscribed", "acme", "sub-bot"))
    assert [v.app_id for v in view.gather(item(), NOW).subscriptions] == [BOT]


def test_guards_are_judged_at_the_messages_time_with_the_app_hubs_own_rules():
    hours = {"timezone": "Europe/Paris", "windows": [{"day": "mon", "opens": "09:00", "closes": "17:00"}]}
    view = acme(business_hours=hours)

    inside, outside = view.gather(item(NOW), NOW), view.gather(item(NOW + timedelta(hours=8)), NOW)

    assert inside.subscriptions[0].guard.allowed and inside.subscriptions[0].app_kind == "bot"
    assert outside.subscriptions[0].guard.rule == OUTSIDE_BUSINESS_HOURS
    assert outside.subscriptions[0].app_kind == "", "a refused app's kind is not needed (as GetApp was not asked)"


def test_another_tenants_private_app_and_an_app_without_the_channel_are_refused_by_their_guard():
    view, mail = acme(), str(uuid.UUID(int=3))
    fold(
        view,
        "app.events",
        event("AppRegistered", "globex", AGENT_APP, name="Inbox", kind="integration", channels=["messenger"],
              visibility="private"),
        event("AppSubscribed", "acme", "sub-agent", app_id=AGENT_APP),
        event("AppRegistered", "platform", mail, name="Mail", kind="bot", channels=["email"], visibility="public"),
        event("AppSubscribed", "acme", "sub-mail", app_id=mail),
    )  # fmt: skip

    rules = {v.app_id: v.guard.rule for v in view.gather(item(), NOW).subscriptions}

    assert rules == {BOT: GUARDS_PASSED, AGENT_APP: APP_UNAVAILABLE, mail: CHANNEL_NOT_SUPPORTED_BY_APP}


@pytest.mark.parametrize(
    ("events", "entitled", "reason", "remaining"),
    [
        ([], True, "ENTITLED", 10),
        ([event("UsageReported", "acme", "ent-1", used_after=10)], True, "ENTITLED", 0),
        ([event("UsageReported", "acme", "ent-1", used_after=4)], True, "ENTITLED", 6),
        ([event("EntitlementCancelled", "acme", "ent-1", reason="unpaid")], False, "CANCELLED", 0),
    ],
)
def test_billing_answers_as_check_entitlement_and_get_quota_did(events, entitled, reason, remaining):
    view = fold(acme(), "billing.events", *events)

    billing = view.billing("acme", NOW)

    assert (billing.entitled, billing.reason, billing.quota_remaining) == (entitled, reason, remaining)
    if remaining == 0 and entitled:
        assert billing.quota_reason == "QUOTA_EXHAUSTED"


def test_a_changed_entitlement_keeps_its_usage_and_an_ended_period_is_not_in_force():
    view = fold(
        acme(),
        "billing.events",
        event(
            "EntitlementChanged", "acme", "ent-1", plan="pro", message_quota=10, period_start=NOW - timedelta(days=2),
            period_end=NOW - timedelta(days=1), features=["messaging"], used_in_period=3,
        ),
    )  # fmt: skip

    assert view.billing("acme", NOW).reason == "PERIOD_ENDED"
    assert view.billing("acme", NOW - timedelta(days=1, hours=1)).quota_remaining == 7
    assert view.billing("nobody", NOW).reason == "NO_ENTITLEMENT"


def test_the_wallet_is_the_oldest_open_one_and_a_closed_one_is_forgotten():
    view = acme()
    assert view.gather(item(), NOW).wallet_id == ""
    old, new = str(uuid.UUID(int=10)), str(uuid.UUID(int=11))
    fold(
        view,
        "wallet.events",
        event("WalletOpened", "acme", new, NOW, currency="EUR"),
        event("WalletOpened", "acme", old, NOW - timedelta(days=1), currency="EUR"),
        event("FundsReserved", "acme", old, amount=1, reservation_id="r", reserved_after=1),
    )
    assert view.gather(item(), NOW).wallet_id == old

    fold(view, "wallet.events", event("WalletClosed", "acme", old))
    assert view.gather(item(), NOW).wallet_id == new
    assert decide_route(item(), view.gather(item(), NOW)).facts["wallet"] == new


def test_only_the_events_routing_reads_are_decoded_and_folded():
    assert wanted("wallet.events", "poseidon.wallet.WalletOpened")
    assert not wanted("wallet.events", "poseidon.wallet.FundsReserved")
    assert not wanted("tenant.events", "poseidon.tenant.MemberJoined")
    assert not wanted("message.events", "poseidon.message.MessageRouted")

    view = fold(acme(), "tenant.events", event("MemberJoined", "acme", "acme", principal_id="p", role="owner"))

    assert view.applied == 4, "ChannelConnected, AppRegistered, AppSubscribed, EntitlementGranted: no member"
