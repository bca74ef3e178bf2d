"""The routing decision (hubs.message.routing.decide_route), pure: every rule in
its order, what each decision names and explains, and that the same facts always
give the same decision. Guard verdicts come from the App hub's real pure
evaluate_subscription, as CheckGuards computes them. No broker."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hubs.app.guards import (
    APP_UNAVAILABLE,
    CHANNEL_NOT_ALLOWED,
    GUARDS_PASSED,
    NOT_SUBSCRIBED,
    OUTSIDE_BUSINESS_HOURS,
    PAGE_NOT_ALLOWED,
    AppFacts,
    GuardDecision,
    Guards,
    SubscriptionFacts,
    evaluate_subscription,
)
from hubs.message.routing import (
    AGENT,
    BOTPRESS,
    CHANNEL_DISCONNECTED,
    GUARD_CHANNEL_OF,
    GUARDS_REFUSED,
    NO_ACTIVE_SUBSCRIPTION,
    NOT_ENTITLED,
    PLATFORM_TENANT,
    QUOTA_EXHAUSTED,
    ROUTED,
    RULES,
    UNKNOWN_CHANNEL_ACCOUNT,
    BillingVerdict,
    ChannelOwner,
    InboundItem,
    RoutingDecision,
    RoutingFacts,
    SubscriptionVerdict,
    decide_route,
)

TENANT = "acme"
PAGE = "104857600123"
# A Monday, 10:30 in Paris (08:30 UTC in March, before daylight saving).
MONDAY_MORNING = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
SUNDAY_NIGHT = datetime(2026, 3, 1, 22, 0, tzinfo=UTC)
BOT = str(uuid.UUID(int=0xB0))
INTEGRATION = str(uuid.UUID(int=0x10))
OTHER_BOT = str(uuid.UUID(int=0xB1))
OFFICE_HOURS = {"timezone": "Europe/Paris", "windows": [{"day": d, "opens": "09:00", "closes": "17:00"} for d in ("mon", "tue")]}
ENTITLED = BillingVerdict(True, "ENTITLED", 100, "ENTITLED")


def item(at: datetime = MONDAY_MORNING, account: str = PAGE) -> InboundItem:
    return InboundItem(channel="facebook", account_id=account, contact_id="psid-1", received_at=at)


def verdict(app_id: str, kind: str = "bot", *, guards: Guards = Guards(), at: datetime = MONDAY_MORNING, active: bool = True,
            app_tenant: str = "platform", visibility: str = "public", channels=("messenger",)):  # fmt: skip
    """The guard verdict the App hub's CheckGuards gives for one subscription."""
    app = AppFacts(app_tenant, visibility, frozenset(channels)) if app_tenant else None
    decision = evaluate_subscription(TENANT, app_id, app, SubscriptionFacts(active, guards), "messenger", PAGE, at)
    return SubscriptionVerdict(app_id, kind if decision.allowed else "", decision)


WALLET = "6d1c1f9e-0000-4000-8000-00000000a11e"


def facts(*subscriptions: SubscriptionVerdict, billing: BillingVerdict | None = ENTITLED, connected: bool = True) -> RoutingFacts:
    return RoutingFacts(ChannelOwner(TENANT, connected), subscriptions, billing, WALLET)


def then(decision: RoutingDecision, rule: str, *, routed: bool = False, tenant: str = TENANT) -> RoutingDecision:
    assert (decision.rule, decision.routed, decision.tenant_id) == (rule, routed, tenant), decision
    assert decision.reason and len(decision.reason) <= 500
    if not routed:
        assert (decision.app_id, decision.spoke) == ("", "")
    return decision


# -- rule 1: the channel account ------------------------------------------------------


def test_an_account_no_tenant_connected_is_rejected_as_unknown_and_kept_under_the_platform_tenant():
    decision = then(decide_route(item(), RoutingFacts(owner=None)), UNKNOWN_CHANNEL_ACCOUNT, tenant=PLATFORM_TENANT)

    assert PAGE in decision.reason
    assert decision.facts == {"channel_account": f"facebook/{PAGE}"}


def test_an_account_its_tenant_disconnected_is_rejected_and_stays_with_that_tenant():
    decision = then(decide_route(item(), facts(verdict(BOT), connected=False)), CHANNEL_DISCONNECTED)

    assert "disconnected" in decision.reason and decision.facts["tenant"] == TENANT


def test_the_unknown_account_rule_comes_before_everything_else():
    # Even with facts that would otherwise route, an unknown account decides first.
    unknown = RoutingFacts(None, (verdict(BOT),), ENTITLED)

    then(decide_route(item(), unknown), UNKNOWN_CHANNEL_ACCOUNT, tenant=PLATFORM_TENANT)


# -- rule 2: subscriptions ------------------------------------------------------------


def test_a_tenant_without_an_active_subscription_is_rejected_whatever_billing_says():
    for billing in (ENTITLED, None, BillingVerdict(False, "NO_ENTITLEMENT", 0)):
        decision = then(decide_route(item(), facts(billing=billing)), NO_ACTIVE_SUBSCRIPTION)
        assert decision.facts["subscriptions"] == "0"


# -- rule 3: guards -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("subscription", "guard_rule"),
    [
        (verdict(BOT, guards=Guards.parse(["instagram"])), CHANNEL_NOT_ALLOWED),
        (verdict(BOT, guards=Guards.parse([], ["another-page"])), PAGE_NOT_ALLOWED),
        (verdict(BOT, guards=Guards.parse([], [], OFFICE_HOURS), at=SUNDAY_NIGHT), OUTSIDE_BUSINESS_HOURS),
        (verdict(BOT, active=False), NOT_SUBSCRIBED),
        (verdict(BOT, app_tenant="globex", visibility="private"), APP_UNAVAILABLE),
        (verdict(BOT, app_tenant=""), APP_UNAVAILABLE),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_when_every_subscription_is_refused_by_its_guards_the_decision_names_the_guard_rule(subscription, guard_rule):
    decision = then(decide_route(item(), facts(subscription)), GUARDS_REFUSED)

    assert decision.reason.startswith(f"{guard_rule}: app {BOT}")
    assert decision.facts["guard_rule"] == guard_rule
    assert decision.facts[f"guard.{BOT}"] == guard_rule


def test_guards_are_judged_before_billing():
    refused = verdict(BOT, guards=Guards.parse(["instagram"]))

    then(decide_route(item(), facts(refused, billing=BillingVerdict(False, "CANCELLED", 0))), GUARDS_REFUSED)


def test_with_several_refusals_the_reason_names_the_lowest_app_ids_refusal_and_the_facts_name_every_one():
    # The kind of a refused app is not asked (the router only looks up apps that passed).
    bot = verdict(BOT, guards=Guards.parse([], [], OFFICE_HOURS), at=SUNDAY_NIGHT)
    integration = verdict(INTEGRATION, "integration", guards=Guards.parse(["instagram"]))

    decision = then(decide_route(item(SUNDAY_NIGHT), facts(bot, integration)), GUARDS_REFUSED)

    assert decision.reason.startswith(f"{CHANNEL_NOT_ALLOWED}: app {INTEGRATION}")
    assert "1 more app(s) refused too" in decision.reason
    assert decision.facts[f"guard.{BOT}"] == OUTSIDE_BUSINESS_HOURS
    assert decision.facts[f"guard.{INTEGRATION}"] == CHANNEL_NOT_ALLOWED


def test_a_refused_bot_does_not_stop_a_passing_integration_from_getting_the_message():
    bot_after_hours = verdict(BOT, guards=Guards.parse([], [], OFFICE_HOURS), at=SUNDAY_NIGHT)
    inbox = verdict(INTEGRATION, "integration", at=SUNDAY_NIGHT)

    decision = then(decide_route(item(SUNDAY_NIGHT), facts(bot_after_hours, inbox)), ROUTED, routed=True)

    assert (decision.app_id, decision.spoke) == (INTEGRATION, AGENT)


# -- rule 4: billing ------------------------------------------------------------------


@pytest.mark.parametrize("reason", ["NO_ENTITLEMENT", "CANCELLED", "PERIOD_NOT_STARTED", "PERIOD_ENDED", "FEATURE_NOT_IN_PLAN"])
def test_a_tenant_billing_does_not_entitle_to_messaging_is_rejected_with_the_billing_reason(reason):
    decision = then(decide_route(item(), facts(verdict(BOT), billing=BillingVerdict(False, reason, 0, reason))), NOT_ENTITLED)

    assert decision.reason.startswith(f"{reason}: ")
    assert decision.facts["entitlement"] == reason


def test_no_billing_answer_counts_as_not_entitled():
    decision = then(decide_route(item(), facts(verdict(BOT), billing=None)), NOT_ENTITLED)

    assert decision.reason.startswith("NO_ANSWER")


@pytest.mark.parametrize("remaining", [0, -5])
def test_an_entitled_tenant_without_quota_left_is_rejected_as_quota_exhausted(remaining):
    billing = BillingVerdict(True, "ENTITLED", remaining, "QUOTA_EXHAUSTED")

    decision = then(decide_route(item(), facts(verdict(BOT), billing=billing)), QUOTA_EXHAUSTED)

    assert decision.reason.startswith("QUOTA_EXHAUSTED")
    assert decision.facts["quota_remaining"] == str(remaining)


def test_entitlement_is_judged_before_quota():
    billing = BillingVerdict(False, "CANCELLED", 0, "CANCELLED")

    then(decide_route(item(), facts(verdict(BOT), billing=billing)), NOT_ENTITLED)


# -- rule 5: routed -------------------------------------------------------------------


def test_a_message_for_a_subscribed_bot_that_passes_its_guards_goes_to_botpress():
    decision = then(decide_route(item(), facts(verdict(BOT))), ROUTED, routed=True)

    assert (decision.app_id, decision.spoke) == (BOT, BOTPRESS)
    assert BOT in decision.reason and GUARDS_PASSED not in decision.reason  # the guard's words, not its rule name
    assert decision.facts == {
        "channel_account": f"facebook/{PAGE}",
        "tenant": TENANT,
        "subscriptions": "1",
        f"guard.{BOT}": GUARDS_PASSED,
        "entitlement": "ENTITLED",
        "quota_remaining": "100",
        "wallet": WALLET,
    }


def test_a_message_for_a_non_bot_app_goes_to_the_agent_inbox_with_no_spoke_acting():
    decision = then(decide_route(item(), facts(verdict(INTEGRATION, "integration"))), ROUTED, routed=True)

    assert (decision.app_id, decision.spoke) == (INTEGRATION, AGENT)


def test_within_business_hours_the_bot_gets_the_message():
    bot = verdict(BOT, guards=Guards.parse([], [PAGE], OFFICE_HOURS), at=MONDAY_MORNING)

    assert then(decide_route(item(), facts(bot)), ROUTED, routed=True).spoke == BOTPRESS


def test_among_passing_apps_bots_come_first_then_the_lowest_app_id():
    decision = decide_route(item(), facts(verdict(INTEGRATION, "integration"), verdict(OTHER_BOT), verdict(BOT)))

    assert (decision.app_id, decision.spoke) == (BOT, BOTPRESS)
    assert "2 other app(s) passed too" in decision.reason


def test_the_decision_does_not_depend_on_the_order_the_facts_arrived_in():
    subscriptions = [verdict(INTEGRATION, "integration"), verdict(OTHER_BOT), verdict(BOT, guards=Guards.parse(["instagram"]))]

    decisions = [decide_route(item(), facts(*order)) for order in itertools.permutations(subscriptions)]

    assert all(d == decisions[0] for d in decisions) and decisions[0].app_id == OTHER_BOT


def test_the_platform_names_of_ingress_map_to_the_channels_guards_judge():
    from hubs.app.guards import CHANNELS

    assert item().guard_channel == GUARD_CHANNEL_OF["facebook"] == "messenger"
    assert set(GUARD_CHANNEL_OF.values()) <= CHANNELS


# -- every decision, whatever the facts ------------------------------------------------

_guards = st.sampled_from(
    [
        GuardDecision(True, GUARDS_PASSED, "channel messenger (any channel), any page, at any time"),
        GuardDecision(False, OUTSIDE_BUSINESS_HOURS, "sun 23:00 Europe/Paris is outside the business hours"),
        GuardDecision(False, PAGE_NOT_ALLOWED, "page is not allowed"),
        GuardDecision(False, APP_UNAVAILABLE, "app is unknown"),
    ]
)
_verdicts = st.builds(SubscriptionVerdict, st.uuids().map(str), st.sampled_from(["bot", "integration", ""]), _guards)
_billing = st.one_of(
    st.none(),
    st.builds(
        BillingVerdict,
        st.booleans(),
        st.sampled_from(["ENTITLED", "CANCELLED", "NO_ENTITLEMENT"]),
        st.integers(-2, 3),
        st.sampled_from(["ENTITLED", "QUOTA_EXHAUSTED"]),
    ),
)
_owners = st.one_of(st.none(), st.builds(ChannelOwner, st.sampled_from(["acme", "globex"]), st.booleans()))


@given(_owners, st.lists(_verdicts, max_size=60, unique_by=lambda v: v.app_id), _billing)
def test_every_decision_names_a_known_rule_explains_itself_and_routes_only_to_an_allowed_subscription(owner, verdicts, billing):
    decision = decide_route(item(), RoutingFacts(owner, tuple(verdicts), billing))

    assert decision.rule in RULES and decision.reason and len(decision.reason) <= 500
    positions = 4  # the router adds one fact per topic it reads facts from (hubs/message/feed.py)
    assert len(decision.facts) + positions <= 50, "the Message hub accepts at most 50 facts"
    assert decision.tenant_id == (owner.tenant_id if owner else PLATFORM_TENANT)
    if decision.routed:
        chosen = [v for v in verdicts if v.app_id == decision.app_id]
        assert chosen and chosen[0].guard.allowed
        assert billing is not None and billing.entitled and billing.quota_remaining > 0
        assert decision.spoke == (BOTPRESS if chosen[0].app_kind == "bot" else AGENT)
    else:
        assert (decision.app_id, decision.spoke) == ("", "")
    assert decision == decide_route(item(), RoutingFacts(owner, tuple(reversed(verdicts)), billing)), "order of facts matters"
