"""The routing decision — the one place in the system that decides where an inbound
message goes. Pure: given the item and the facts the router gathered (who owns
the channel account, the tenant's active subscriptions with their guard verdicts,
the billing entitlement), it returns the decision and the named rule that took
it. No I/O; hubs/message/router.py gathers the facts and records the decision.

The rules, in order — the first that applies decides:

1. `UnknownChannelAccount` — no tenant connected the account (kept under the
   reserved tenant `platform`); `ChannelDisconnected` — its tenant disconnected it.
2. `NoActiveSubscription` — the tenant is subscribed to no app.
3. `GuardsRefused` — every subscription's guards refused the message (channel,
   page, business hours, app availability); the reason names the guard rule.
4. `NotEntitled` — billing does not entitle the tenant to messaging (the
   reason starts with the billing reason: NO_ENTITLEMENT, CANCELLED, …);
   `QuotaExhausted` — entitled, but no message quota is left.
5. `Routed` — to the first app whose guards passed, bot apps first (then by
   app id): `botpress` acts next for a bot, `agent` (the human inbox, no spoke)
   for any other app.
6. `HeldByAgent` — routed to a bot, but the conversation is with the people
   (awaiting an agent, or taken by one): `agent` acts next, the bot is not asked.
   The conversation's handler is the Message hub's own state, so this rule is
   applied where that state is, by the Conversation aggregate (`hand_to_people`),
   on the router's decision: still one decision, taken in the Message hub.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from hubs.app.guards import GuardDecision

PLATFORM_TENANT = "platform"
"""Reserved tenant (nobody can be its member) that keeps the messages of channel
accounts no tenant connected: recorded and rejected, visible to platform principals."""
GUARD_CHANNEL_OF: Mapping[str, str] = {"facebook": "messenger"}
"""The channel registry, conversations and spokes name the chat platform an item
came from, as ingress does (`facebook`); the App hub's guards name the product
channel (hubs.app.guards.CHANNELS: `messenger`). The platforms the router knows."""
MESSAGING_FEATURE = "messaging"
"""The billing feature a tenant needs for its messages to be routed."""
BOTPRESS, AGENT = "botpress", "agent"
BOT_KIND = "bot"

ROUTED = "Routed"
UNKNOWN_CHANNEL_ACCOUNT = "UnknownChannelAccount"
CHANNEL_DISCONNECTED = "ChannelDisconnected"
NO_ACTIVE_SUBSCRIPTION = "NoActiveSubscription"
GUARDS_REFUSED = "GuardsRefused"
NOT_ENTITLED = "NotEntitled"
QUOTA_EXHAUSTED = "QuotaExhausted"
HELD_BY_AGENT = "HeldByAgent"
RULES = (
    UNKNOWN_CHANNEL_ACCOUNT,
    CHANNEL_DISCONNECTED,
    NO_ACTIVE_SUBSCRIPTION,
    GUARDS_REFUSED,
    NOT_ENTITLED,
    QUOTA_EXHAUSTED,
    ROUTED,
    HELD_BY_AGENT,
)
"""Every rule a decision may name, in the order they are tried."""
ENTITLED = "ENTITLED"
WALLET_FACT = "wallet"
"""The fact naming the wallet a routed message is charged on ('' if the tenant has none)."""
MAX_GUARD_FACTS = 32
"""Guard verdicts recorded per decision: with the other facts and the router's log
positions (hubs/message/feed.py) they stay within the Message hub's 50 facts."""
MAX_REASON = 500


@dataclass(frozen=True)
class InboundItem:
    """What the decision reads of an inbound message."""

    channel: str
    """The chat platform, as ingress names it (facebook)."""
    account_id: str
    """The channel account it arrived on (Facebook page id)."""
    contact_id: str
    received_at: datetime
    """The platform's time of the message: guards' business hours are judged at it."""

    @property
    def guard_channel(self) -> str:
        """The channel the App hub's guards judge (messenger for facebook)."""
        return GUARD_CHANNEL_OF.get(self.channel, self.channel)


@dataclass(frozen=True)
class ChannelOwner:
    """Who the channel registry says owns the account."""

    tenant_id: str
    connected: bool


@dataclass(frozen=True)
class SubscriptionVerdict:
    """One active subscription of the tenant and what its guards said of the item
    (hubs.app.guards.evaluate_subscription, through the App hub's CheckGuards)."""

    app_id: str
    app_kind: str
    """bot or integration; empty when the app is unavailable (its guard says so)."""
    guard: GuardDecision


@dataclass(frozen=True)
class BillingVerdict:
    """The Billing hub's answers for the tenant, now."""

    entitled: bool
    """CheckEntitlement(feature=messaging).entitled"""
    reason: str
    """Its reason: ENTITLED, NO_ENTITLEMENT, CANCELLED, PERIOD_NOT_STARTED, PERIOD_ENDED, FEATURE_NOT_IN_PLAN."""
    quota_remaining: int
    """GetQuota.remaining (0 unless in force)."""
    quota_reason: str = ENTITLED


@dataclass(frozen=True)
class RoutingFacts:
    owner: ChannelOwner | None
    """None: no tenant ever connected the account."""
    subscriptions: Sequence[SubscriptionVerdict] = ()
    """The owner's active subscriptions, each with its guard verdict."""
    billing: BillingVerdict | None = None
    """None: not asked (an earlier rule decided) or no answer — counts as not entitled."""
    wallet_id: str = ""
    """The owner's open wallet (the oldest), '' if none: recorded with a routed
    message, it is what the inbound-message saga reserves the charge on."""


@dataclass(frozen=True)
class RoutingDecision:
    routed: bool
    tenant_id: str
    """The tenant the message belongs to: the account's owner, or PLATFORM_TENANT."""
    app_id: str
    spoke: str
    """botpress or agent when routed; empty otherwise."""
    rule: str
    reason: str
    facts: Mapping[str, str] = field(default_factory=dict)
    """What the decision was taken on, for the record (no message content)."""


def decide_route(item: InboundItem, facts: RoutingFacts) -> RoutingDecision:
    """Decide where `item` goes; the first rule of the module docstring that applies decides."""
    account = f"{item.channel} account {item.account_id}"
    known = {"channel_account": f"{item.channel}/{item.account_id}"}
    owner = facts.owner
    if owner is None:
        return _rejected(PLATFORM_TENANT, UNKNOWN_CHANNEL_ACCOUNT, f"no tenant connected {account}", known)
    tenant = owner.tenant_id
    known["tenant"] = tenant
    if not owner.connected:
        return _rejected(tenant, CHANNEL_DISCONNECTED, f"tenant {tenant} disconnected {account}", known)

    candidates = sorted(facts.subscriptions, key=_preference)
    known["subscriptions"] = str(len(candidates))
    if not candidates:
        return _rejected(tenant, NO_ACTIVE_SUBSCRIPTION, f"tenant {tenant} has no active app subscription", known)
    for verdict in candidates[:MAX_GUARD_FACTS]:
        known[f"guard.{verdict.app_id}"] = verdict.guard.rule
    allowed = [v for v in candidates if v.guard.allowed]
    if not allowed:
        first = candidates[0]
        known["guard_rule"] = first.guard.rule
        others = f"; {len(candidates) - 1} more app(s) refused too" if len(candidates) > 1 else ""
        reason = f"{first.guard.rule}: app {first.app_id}: {first.guard.reason}{others}"
        return _rejected(tenant, GUARDS_REFUSED, reason, known)

    billing = facts.billing
    if billing is None:
        return _rejected(tenant, NOT_ENTITLED, f"NO_ANSWER: billing did not say whether tenant {tenant} may message", known)
    known["entitlement"] = billing.reason
    known["quota_remaining"] = str(billing.quota_remaining)
    if not billing.entitled:
        reason = f"{billing.reason}: tenant {tenant} is not entitled to {MESSAGING_FEATURE}"
        return _rejected(tenant, NOT_ENTITLED, reason, known)
    if billing.quota_remaining <= 0:
        reason = f"{billing.quota_reason}: tenant {tenant} has no message quota left this period"
        return _rejected(tenant, QUOTA_EXHAUSTED, reason, known)

    chosen = allowed[0]
    known[WALLET_FACT] = facts.wallet_id
    spoke = BOTPRESS if chosen.app_kind == BOT_KIND else AGENT
    kind = chosen.app_kind or "app"
    reason = f"app {chosen.app_id} ({kind}) passed its guards ({chosen.guard.reason}); {spoke} acts next"
    if len(allowed) > 1:
        reason += f"; {len(allowed) - 1} other app(s) passed too, bots first then by app id"
    return RoutingDecision(True, tenant, chosen.app_id, spoke, ROUTED, _short(reason), known)


BOT_HANDLES, AWAITING_AGENT, AGENT_HANDLES = "bot", "awaiting_agent", "agent"
HANDLERS = (BOT_HANDLES, AWAITING_AGENT, AGENT_HANDLES)
"""Who answers a conversation: the bot, nobody yet (it awaits an agent), or an agent."""
HANDLER_FACT = "handled_by"
OTHER_APP_PREFIX = "facebook-app:"
"""Agent id of a conversation another Messenger app (the Page Inbox) holds: this and its app id."""


def hand_to_people(spoke: str, reason: str, handler: str, agent_id: str) -> tuple[str, str] | None:
    """Rule 6: the (rule, reason) that sends a message routed to `spoke` to the people
    instead, given who handles its conversation; None when the decision stands."""
    if spoke != BOTPRESS or handler == BOT_HANDLES:
        return None
    who = f"agent {agent_id} took the conversation" if handler == AGENT_HANDLES else "the conversation awaits an agent"
    return HELD_BY_AGENT, _short(f"{who}: {AGENT} acts next, not the bot; {reason}")


def asks_for_people(spoke: str, handler: str) -> bool:
    """Does a decision routing to `spoke` put a conversation the bot handles in the agents' queue?"""
    return spoke == AGENT and handler == BOT_HANDLES


def _preference(verdict: SubscriptionVerdict) -> tuple[bool, str]:
    # Bots answer first; the human inbox is the fallback. Ties: by app id, so the
    # same facts always give the same decision.
    return verdict.app_kind != BOT_KIND, verdict.app_id


def _rejected(tenant: str, rule: str, reason: str, facts: dict[str, str]) -> RoutingDecision:
    return RoutingDecision(False, tenant, "", "", rule, _short(reason), facts)


def _short(reason: str) -> str:
    return reason if len(reason) <= MAX_REASON else reason[: MAX_REASON - 1] + "…"
