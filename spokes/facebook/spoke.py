"""The Facebook spoke's wiring. Two ways a message goes out through the Send API
(24-hour window and tags applied), each reporting its delivery status back to the
Message hub (sent with the platform's message id, or failed with the reason):

* the inbound-message saga's `SendReply` step delivers the bot's replies (the
  `ask_bot` step's result) — a failure fails the step and the saga compensates;
* every other outbound message recorded for a Messenger conversation (an agent's
  reply, an operator's message) is sent when its OutboundMessageRecorded arrives.
  Replies the bot recorded are left to the saga, so none is sent twice.

No double reply: before each call the spoke records the intent on the message
(status `sending`, a fresh command id each attempt). An attempt that finds the
message already sent does not send it; one that finds an earlier attempt with
no outcome (the spoke died mid-call, or the call timed out after leaving)
follows the tenant's delivery policy (spokes/facebook/policy.py): at most once
answers "outcome unknown" — a failed step with that reason, on the dashboard —
and sends nothing; at least once sends again. Under at most once a call whose
outcome is unknown is never retried, and the message stays `sending`.

Messenger's Handover Protocol: when the Page Inbox (another app) takes a thread,
the router records the conversation as held by it (`facebook-app:<app id>`) and
the bot is not asked; when such a conversation is handed back to the bot here,
this spoke takes thread control back (`take_thread_control`).

Every send uses the tenant's own page token for the page (spokes/facebook/tokens.py,
sealed in the Tenant read store); a token Facebook refuses puts the channel into
"needs reauthorization" (spokes/facebook/actions.py). Delivery and read receipts come
back through ingress and the router. It routes nothing."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import structlog
from tenacity import AsyncRetrying, retry_if_exception, stop_after_delay, wait_exponential_jitter

from hubs.message.commands import UpdateDeliveryStatus
from hubs.message.delivery import SENDING
from hubs.message.events import CONVERSATION_HANDED_BACK
from hubs.message.router import ACTOR as ROUTER_ACTOR
from hubs.message.routing import OTHER_APP_PREFIX
from infra.command_client import new_meta
from infra.outage import PLATFORM_OUTAGE
from infra.spoke import Outcome, PermanentError, RetryableError, SpokeCall, SpokeContext, SpokeSpec
from schemas.contracts import OUTCOME_UNKNOWN, spoke_actor
from spokes.facebook.actions import SEND_MESSAGE, SPOKE_NAME, SYSTEM, send_reply, take_thread_back
from spokes.facebook.policy import AT_MOST_ONCE, DeliveryPolicies, opened_policies
from spokes.facebook.tokens import PageTokens, opened_tokens
from spokes.facebook.translate import HUMAN_AGENT
from spokes.facebook.typing_indicator import show_typing, wants_typing

log = structlog.get_logger(__name__)

OUTBOUND_RECORDED = "poseidon.message.OutboundMessageRecorded"
HANDED_BACK = CONVERSATION_HANDED_BACK
SAGA_DELIVERED_ACTORS = frozenset({spoke_actor("botpress")})
"""Outbound messages recorded by these actors are delivered by the inbound-message saga."""
_STATUS_IDS = uuid.UUID("6f1c1a52-4c4e-5b1e-9d35-0c6f2a3b7e11")
REPORT_PATIENCE_S = 120.0
"""How long a delivery status report waits out the Message hub or Kafka being away."""


def accepts(event_type: str, record: dict) -> bool:
    if record.get("channel") != "facebook":
        return False
    if wants_typing(event_type, record):
        return True
    if event_type == HANDED_BACK:
        # A thread another app (the Page Inbox) held, handed back here rather than passed
        # back by that app (the router records those, and the thread is ours already).
        return record["agent_id"].startswith(OTHER_APP_PREFIX) and record["envelope"].get("actor") != ROUTER_ACTOR
    return event_type == OUTBOUND_RECORDED and record["envelope"].get("actor") not in SAGA_DELIVERED_ACTORS


async def handle(ctx: SpokeContext, event_type: str, record: dict) -> Outcome:
    if wants_typing(event_type, record):
        return await show_typing(ctx, record)
    envelope = record["envelope"]
    if event_type == HANDED_BACK:
        return await take_thread_back(
            ctx,
            tenant_id=envelope["tenant_id"],
            page_id=record["channel_account_id"],
            psid=record["contact_id"],
            reason=record["reason"],
        )
    last_inbound = record.get("last_inbound_at")
    return await _deliver(
        ctx,
        Message(envelope["aggregate_id"], envelope["tenant_id"], record["message_id"], envelope["correlation_id"],
                envelope["event_id"]),
        page_id=record["channel_account_id"],
        psid=record["contact_id"],
        text=record["text"],
        content=record.get("content", ""),
        last_inbound_at=last_inbound if last_inbound and last_inbound.timestamp() > 0 else None,
        tag=HUMAN_AGENT,  # a person wrote it (not the bot): Messenger allows it up to 7 days after the contact's message
    )  # fmt: skip


async def send_replies(ctx: SpokeContext, call: SpokeCall) -> Outcome:
    """The saga's `SendReply` step: every reply the bot gave, in order; the first
    failure fails the step (the replies sent before it stay sent)."""
    p = call.payload
    last_inbound = datetime.fromisoformat(p["last_inbound_at"]) if p.get("last_inbound_at") else None
    sent: list[str] = []
    degraded: list[str] = []
    outcome = Outcome("send_message", detail="no reply to send")
    for reply in p["replies"]:
        message = Message(p["conversation_id"], call.tenant_id, reply["message_id"], call.correlation_id, call.event_id)
        outcome = await _deliver(
            ctx, message, page_id=p["page_id"], psid=p["psid"], text=reply["text"], last_inbound_at=last_inbound,
            content=reply.get("content", ""),
        )  # fmt: skip
        if not outcome.succeeded:
            return outcome
        sent.append(outcome.external_id)
        # Rich content that went out as text, the bot's side (no rich form) or Messenger's (a limit): on the outcome.
        why = reply.get("degraded") or outcome.data.get("degraded", "")
        if why:
            degraded.append(f"reply {len(sent)}: {why}")
    data = {**outcome.data, "degraded": "; ".join(degraded)[:500]} if degraded else outcome.data
    return dataclasses.replace(outcome, detail=f"{len(sent)} reply(ies) sent", data=data, result={"sent": sent})


@dataclasses.dataclass(frozen=True)
class Message:
    """The outbound message being delivered, as the Message hub knows it."""

    conversation_id: str
    tenant_id: str
    message_id: str
    correlation_id: str
    causation_id: str
    key: str = ""
    """What an attempt's status reports' ids derive from: its claim's command id."""


async def _deliver(
    ctx: SpokeContext,
    message: Message,
    *,
    page_id: str,
    psid: str,
    text: str,
    last_inbound_at,
    tag: str = "",
    content: str = "",
) -> Outcome:
    """Record the intent, send unless the message is already out (or its earlier
    attempt's outcome is unknown and the tenant wants it at most once), report."""
    at_most_once = await ctx.resources.policies.of(message.tenant_id) == AT_MOST_ONCE
    claim_id, refused = await _claim(ctx, message)
    if refused == "AlreadySent":
        return Outcome(SEND_MESSAGE, detail="already sent: not sent again", data={"page_id": page_id})
    if refused == "DeliveryOutcomeUnknown":
        if at_most_once:
            log.warning("earlier send's outcome unknown; not sent again (at most once)", message_id=message.message_id)
            return _unknown(page_id, "an earlier attempt's outcome is unknown; not sent again (at most once)")
        log.warning("earlier send's outcome unknown; sending again (at least once)", message_id=message.message_id)
    attempt = dataclasses.replace(message, key=claim_id)  # this attempt's status reports
    try:
        outcome = await send_reply(
            ctx,
            tenant_id=message.tenant_id,
            page_id=page_id,
            psid=psid,
            text=text,
            content=content,
            last_inbound_at=last_inbound_at,
            now=datetime.now(UTC),
            tag=tag,
            at_most_once=at_most_once,
        )
    except PermanentError as exc:  # e.g. re-authorisation needed: the message failed, say so
        outcome = Outcome(operation=SEND_MESSAGE, succeeded=False, detail=exc.reason, error_code=exc.code)
    except RetryableError as exc:
        if exc.code == OUTCOME_UNKNOWN:
            # The message stays `sending`: whoever tries it next learns its outcome is unknown.
            if at_most_once:
                return _unknown(page_id, f"the send's outcome is unknown ({exc.reason}); not retried (at most once)")
            raise
        # Nothing left (breaker open, refused connection, rate limit, …): give the
        # intent back, so the next attempt may send it, then wait as before.
        not_sent = Outcome(SEND_MESSAGE, succeeded=False, detail=f"not sent: {exc.reason}"[:500], error_code=exc.code)
        await report_status(ctx, not_sent, attempt)
        raise
    await report_status(ctx, outcome, attempt)
    return outcome


async def _claim(ctx: SpokeContext, message: Message) -> tuple[str, str]:
    """Records `sending` on the message with a new command id (so a second attempt
    is refused, not answered with the first one's outcome). Returns that id and the
    rule that refused it, or "" when recorded (or when the hub cannot follow this
    message: the send goes ahead as it did before intents existed)."""
    meta = new_meta(
        message.conversation_id,
        message.tenant_id,
        actor=spoke_actor(SPOKE_NAME),
        correlation_id=message.correlation_id,
        causation_id=message.causation_id,
    )
    result = await ctx.commands.send(UpdateDeliveryStatus(meta, message.message_id, SENDING, ""))
    return meta.command_id, "" if result.accepted else result.rejection


def _unknown(page_id: str, detail: str) -> Outcome:
    return Outcome(SEND_MESSAGE, succeeded=False, detail=detail, error_code=OUTCOME_UNKNOWN, data={"page_id": page_id})


async def report_status(ctx: SpokeContext, outcome: Outcome, message: Message) -> None:
    """Tell the Message hub what became of one attempt at an outbound message. The
    command id derives from the attempt (`message.key`: its claim) and the status,
    so repeating the report is answered, not applied twice — and it is repeated
    here while the hub cannot answer, rather than by trying the whole send again
    (which would find its own intent and call the outcome unknown)."""
    status = "sent" if outcome.succeeded else "failed"
    meta = new_meta(
        message.conversation_id,
        message.tenant_id,
        actor=spoke_actor(SPOKE_NAME),
        command_id=str(uuid.uuid5(_STATUS_IDS, f"{message.key}/{status}")),
        correlation_id=message.correlation_id,
        causation_id=message.causation_id,
    )
    if outcome.succeeded:
        command = UpdateDeliveryStatus(meta, message.message_id, "sent", "", outcome.external_id)
    else:
        command = UpdateDeliveryStatus(meta, message.message_id, "failed", outcome.detail[:500])
    async for attempt in AsyncRetrying(
        retry=retry_if_exception(lambda e: isinstance(e, PLATFORM_OUTAGE)),
        wait=wait_exponential_jitter(initial=0.5, max=5.0),
        stop=stop_after_delay(REPORT_PATIENCE_S),
        reraise=True,
    ):
        with attempt:
            result = await ctx.commands.send(command)
    if not result.accepted and result.rejection != "InvalidStatusTransition":
        raise PermanentError(f"the Message hub refused the delivery status: {result.rejection}", code="status_refused")


@dataclasses.dataclass(frozen=True)
class Resources:
    """What the spoke keeps open for its lifetime (`ctx.resources`)."""

    policies: DeliveryPolicies
    tokens: PageTokens


@asynccontextmanager
async def opened_resources(ctx: SpokeContext) -> AsyncIterator[Resources]:
    async with opened_policies(ctx.settings) as policies, opened_tokens(ctx.settings) as tokens:
        yield Resources(policies, tokens)


SPOKE = SpokeSpec(
    name=SPOKE_NAME,
    ops_index=1,
    system=SYSTEM,
    topics=("message.events",),
    accepts=accepts,
    handle=handle,
    requests={"SendReply": send_replies},
    resources=opened_resources,
)
