"""The Message Hub's router process: consumes `ingress.inbound`, reads the
routing facts from its own projection of the Tenant, App, Billing and Wallet
hubs' events (hubs/message/facts.py, kept current by hubs/message/feed.py: no
remote lookup on the path), takes the decision with the pure
`hubs.message.routing.decide_route`, and records it — with the facts and the log
positions they were read at — through the Message hub's aggregate. It owns no rule of its own and writes no state but
commands: every step is a command with a deterministic id (uuid5 of the
inbound event id and the step), so a crash and re-read never applies anything
twice, and the offset is committed only once its record is fully handled.

What each kind of item becomes:

* message, postback — `RouteMessage` to the conversation of (tenant, channel,
  account, contact): the message and its decision, MessageRouted or
  MessageRejected, in one step. A channel account no tenant connected keeps its
  messages in a conversation of the reserved tenant `platform`. A re-delivered
  message id is refused by the conversation (DuplicateMessage): no decision.
* delivery, read — `RecordDeliveryReceipt` to the owner's conversation.
* bot_reply (Botpress, authenticated by ingress) — `RecordOutboundMessage`
  (message id `botpress:<Botpress message id>`) to the conversation whose id is
  `contact_id`, of the tenant in `tenant_hint`. A push naming a Botpress
  conversation id instead of ours is dead-lettered: mapping it is the Botpress
  spoke's knowledge, not the router's.
* echo — our own outbound message coming back: ignored (debug log).

Undecodable records, unknown platforms or kinds, and items the hub refuses as
invalid go to `ingress.inbound.dlq` whole. The Message hub or Kafka away, or the
facts not current within FRESH_TIMEOUT_S: the record is retried with backoff
until it can be handled; nothing is skipped.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client import Counter

from base.logging import bind_correlation
from base.settings import Settings
from hubs.message.aggregate import MAX_CHOICE, conversation_id
from hubs.message.commands import (
    HandBackToBot,
    RecordDeliveryReceipt,
    RecordOutboundMessage,
    RouteMessage,
    TakeConversation,
)
from hubs.message.feed import FactsFeed
from hubs.message.routing import GUARD_CHANNEL_OF, OTHER_APP_PREFIX, InboundItem, decide_route
from infra.command_client import CommandClient, CommandResult, new_meta
from infra.consumers import group_consumer
from infra.dlq import DeadLetters
from infra.hub import HubSpec
from infra.keyed import KeyedConsumer
from infra.outage import PLATFORM_OUTAGE
from schemas.codec import Codec, DecodeError
from schemas.contracts import Command

log = structlog.get_logger(__name__)

SOURCE_TOPIC = "ingress.inbound"
DLQ_TOPIC = "ingress.inbound.dlq"
CONSUMER_GROUP = "poseidon-message-router"
"""Logical group id; the physical one adds POSEIDON_TOPIC_PREFIX."""
INBOUND_SCHEMA = "poseidon.ingress.InboundReceived"
PROCESS = "message-router"
ACTOR = "message-router"
"""meta.actor of every command the router sends."""
COMMAND_NAMESPACE = uuid.UUID("3f4b3a57-1d4e-5c39-b1a2-7c8d9e0f1a2b")
"""uuid5 namespace of the router's command ids. Never change it: a re-read after
a crash must produce the very same ids."""
COMMAND_TIMEOUT_S = 30.0
MAX_IN_FLIGHT = 64
"""Conversations handled at once; one conversation's items stay in order."""
MAX_RECEIPT_IDS = 100
BOT_REPLY_PREFIX = "botpress:"
"""Outbound message id of a bot reply: this prefix and Botpress's message id."""
MESSAGE_KINDS = ("message", "postback")
HANDOVER = "handover"
RECEIPT_KINDS = {"delivery": "delivery", "read": "read"}
ROUTING_DECISIONS = Counter("poseidon_routing_decisions_total", "Routing decisions recorded, by the rule that decided.", ["rule"])
ROUTER_ITEMS = Counter(
    "poseidon_router_items_total", "Inbound items handled by the router, by kind and outcome.", ["kind", "outcome"]
)
ROUTER_RETRIES = Counter("poseidon_router_retries_total", "Items retried because a hub or Kafka could not answer.", ["error"])


class Unhandleable(Exception):
    """The item cannot become a command (bad platform, kind or ids): dead-letter it."""


class Inbound:
    """A decoded `poseidon.ingress.InboundReceived`: its fields as attributes."""

    __slots__ = ("record",)

    def __init__(self, record: dict[str, Any]):
        self.record = record

    @property
    def envelope(self) -> dict[str, Any]:
        return self.record["envelope"]

    @property
    def event_id(self) -> str:
        return self.envelope["event_id"]

    @property
    def correlation_id(self) -> str:
        return self.envelope.get("correlation_id") or self.event_id

    def __getattr__(self, name: str) -> Any:
        try:
            return self.record[name]
        except KeyError:
            raise AttributeError(name) from None


def command_id(event_id: str, step: str) -> str:
    """The id of the router's `step` for one inbound event: the same on every re-read."""
    return str(uuid.uuid5(COMMAND_NAMESPACE, f"{event_id}/{step}"))


# -- one item ------------------------------------------------------------------------


class Router:
    """Turns one inbound record into the Message hub's commands."""

    def __init__(
        self,
        codec: Codec,
        facts: FactsFeed,
        commands: CommandClient,
        dead_letter_sink: Callable[[Any, str, str], Awaitable[None]],
        own_app_id: str = "",
    ):
        self.codec, self.facts, self.commands, self.dead_letter = codec, facts, commands, dead_letter_sink
        self.own_app_id = own_app_id
        """Our Facebook app's id: a thread passed to it is back with the bot."""

    async def handle(self, record: Any) -> str:
        """Handle one Kafka record completely; returns its outcome (a metric label).
        Raises only what is worth retrying (a hub or Kafka away)."""
        try:
            decoded = self.codec.decode(record.value)
        except DecodeError as exc:
            await self.dead_letter(record, exc.reason, "DecodeError")
            return self._count("unknown", "dead_lettered")
        if decoded.name != INBOUND_SCHEMA:
            await self.dead_letter(record, f"{decoded.name} is not {INBOUND_SCHEMA}", "UnexpectedSchema")
            return self._count("unknown", "dead_lettered")
        item = Inbound(decoded.record)
        kind = item.kind if item.kind in (*MESSAGE_KINDS, *RECEIPT_KINDS, "echo", "bot_reply", HANDOVER) else "unknown"
        bind_correlation(item.correlation_id, inbound_event_id=item.event_id, kind=kind, platform=item.platform)
        try:
            if kind in MESSAGE_KINDS:
                outcome = await self.route_message(item)
            elif kind in RECEIPT_KINDS:
                outcome = await self.apply_receipt(item)
            elif kind == "bot_reply":
                outcome = await self.record_bot_reply(item)
            elif kind == HANDOVER:
                outcome = await self.apply_handover(item)
            elif kind == "echo":
                log.debug("echo of our own outbound message ignored")
                outcome = "ignored"
            else:
                raise Unhandleable(f"kind {str(item.kind)[:40]!r} is not one the router knows")
        except Unhandleable as exc:
            await self.dead_letter(record, str(exc), "Unhandleable")
            outcome = "dead_lettered"
        return self._count(kind, outcome)

    async def route_message(self, item: Inbound) -> str:
        inbound = InboundItem(_channel(item), item.account_id, item.contact_id, item.sent_at)
        decision = decide_route(inbound, await self.facts.gather(inbound))
        meta = self._meta(
            item,
            "route",
            conversation_id(decision.tenant_id, inbound.channel, item.account_id, item.contact_id),
            decision.tenant_id,
        )
        command = RouteMessage(
            meta,
            channel=inbound.channel,
            channel_account_id=item.account_id,
            contact_id=item.contact_id,
            message_id=item.message_id,
            text=item.text,
            received_at=item.sent_at,
            routed=decision.routed,
            rule=decision.rule,
            reason=decision.reason,
            app_id=decision.app_id,
            spoke=decision.spoke,
            attachments=[{"type": a["type"], "url": a["url"]} for a in item.attachments],
            facts={**decision.facts, **self.facts.recorded_positions()},
            choice=_choice(item),
        )
        result = await self._send(command)
        if result.accepted:
            if not result.duplicate:  # a re-read after a crash was counted before
                ROUTING_DECISIONS.labels(decision.rule).inc()
            log.info(
                "routing decision recorded",
                rule=decision.rule,
                tenant_id=decision.tenant_id,
                app_id=decision.app_id,
                spoke=decision.spoke,
            )
            return "routed" if decision.routed else "rejected"
        if result.rejection == "DuplicateMessage":
            log.info("re-delivered message: already recorded and decided", message_id=item.message_id)
            return "duplicate"
        raise Unhandleable(f"RouteMessage refused: {result.rejection}: {result.reason}")

    async def apply_receipt(self, item: Inbound) -> str:
        channel = _channel(item)
        owner = await self.facts.owner(channel, item.account_id)
        if owner is None:
            log.debug("receipt for a channel account no tenant connected", account_id=item.account_id)
            return "unknown_account"
        conversation = conversation_id(owner.tenant_id, channel, item.account_id, item.contact_id)
        watermark = datetime.fromtimestamp(max(item.watermark, 0) / 1000, tz=UTC)
        mids = list(item.mids) if item.kind == "delivery" else []
        chunks = [mids[i : i + MAX_RECEIPT_IDS] for i in range(0, len(mids), MAX_RECEIPT_IDS)] or [[]]
        moved = 0
        for n, chunk in enumerate(chunks):
            meta = self._meta(item, f"receipt-{n}", conversation, owner.tenant_id)
            command = RecordDeliveryReceipt(
                meta, receipt=RECEIPT_KINDS[item.kind], watermark=watermark, platform_message_ids=chunk
            )
            result = await self._send(command)
            if result.rejection == "AggregateNotFound":
                log.debug("receipt for a conversation that does not exist")
                return "no_conversation"
            if not result.accepted:
                raise Unhandleable(f"RecordDeliveryReceipt refused: {result.rejection}: {result.reason}")
            moved += len(result.event_ids)
        return "receipt_applied" if moved else "receipt_unchanged"

    async def apply_handover(self, item: Inbound) -> str:
        """Messenger's Handover Protocol: another app (the Page Inbox, where the page's
        people answer) took the thread → the people hold the conversation and the bot is
        not asked; the thread came back to this app → the bot answers again. The item's
        text is the app that holds the thread now."""
        channel = _channel(item)
        owner = await self.facts.owner(channel, item.account_id)
        if owner is None or not owner.connected:
            log.debug("handover on a channel account no tenant has connected", account_id=item.account_id)
            return "unknown_account"
        conversation = conversation_id(owner.tenant_id, channel, item.account_id, item.contact_id)
        meta = self._meta(item, "handover", conversation, owner.tenant_id)
        if self.own_app_id and item.text == self.own_app_id:
            command: TakeConversation | HandBackToBot = HandBackToBot(meta, reason="the thread came back to this app")
        else:
            command = TakeConversation(meta, agent_id=f"{OTHER_APP_PREFIX}{item.text}")
        result = await self._send(command)
        if result.accepted:
            log.info("handover recorded", command=type(command).__name__, changed=bool(result.event_ids))
            return "handover_recorded" if result.event_ids else "handover_unchanged"
        if result.rejection in ("AggregateNotFound", "NotWithAgent", "HeldByAnotherAgent", "ConversationClosed"):
            log.info("handover changes nothing here", rejection=result.rejection)
            return "handover_unchanged"
        raise Unhandleable(f"{type(command).__name__} refused: {result.rejection}: {result.reason}")

    async def record_bot_reply(self, item: Inbound) -> str:
        tenant_id, conversation = item.tenant_hint, item.contact_id
        if not tenant_id:
            raise Unhandleable("a bot reply names no tenant (tenant_hint is empty)")
        try:
            if str(uuid.UUID(conversation)) != conversation:
                raise ValueError(conversation)
        except ValueError:
            # Botpress pushes name its own conversation; the map to ours is the
            # Botpress spoke's. Parked whole, so it can be re-driven once mapped.
            raise Unhandleable(
                f"a bot reply's contact_id must be our conversation id (a UUID), not {conversation[:80]!r}"
            ) from None
        # Named by the bot's message id: a reply recorded by another path under the
        # same name is refused as a duplicate, so the contact gets it once.
        message_id = f"{BOT_REPLY_PREFIX}{item.message_id or uuid.uuid5(COMMAND_NAMESPACE, f'{item.event_id}/reply-id')}"
        if item.attachments:
            log.warning("bot reply attachments are not recorded yet", attachments=len(item.attachments))
        meta = self._meta(item, "reply", conversation, tenant_id)
        result = await self._send(RecordOutboundMessage(meta, message_id=message_id, text=item.text))
        if result.accepted:
            return "reply_recorded"
        if result.rejection == "DuplicateMessage":
            return "duplicate"
        raise Unhandleable(f"RecordOutboundMessage refused: {result.rejection}: {result.reason}")

    def _meta(self, item: Inbound, step: str, aggregate_id: str, tenant_id: str):
        return new_meta(
            aggregate_id,
            tenant_id,
            actor=ACTOR,
            command_id=command_id(item.event_id, step),
            correlation_id=item.correlation_id,
            causation_id=item.event_id,
        )

    async def _send(self, command: Command) -> CommandResult:
        return await self.commands.send(command, timeout=COMMAND_TIMEOUT_S)

    @staticmethod
    def _count(kind: str, outcome: str) -> str:
        ROUTER_ITEMS.labels(kind, outcome).inc()
        return outcome


def _choice(item: Inbound) -> str:
    """The option the person picked; one longer than the hub keeps (Messenger caps payloads at
    1,000 characters) is left out, so the message itself is still recorded and answered."""
    choice = item.record.get("choice") or ""
    if len(choice) > MAX_CHOICE:
        log.warning("choice longer than the hub keeps: left out", length=len(choice))
        return ""
    return choice


def _channel(item: Inbound) -> str:
    """The conversation's channel: the platform, if the router knows it."""
    if item.platform not in GUARD_CHANNEL_OF:
        raise Unhandleable(f"platform {str(item.platform)[:40]!r} is not one the router knows")
    return item.platform


def is_transient(exc: BaseException) -> bool:
    """Worth retrying: the record is fine, something it needs is away (the facts
    not current in time is a TimeoutError, an OSError: retried too)."""
    return isinstance(exc, PLATFORM_OUTAGE)


# -- the process ---------------------------------------------------------------------


class MessageRouter:
    """The process: `ingress.inbound` on the shared keyed consumer (infra.keyed),
    each conversation's items in order, conversations concurrently, an offset
    committed only once every item before it is handled."""

    def __init__(self, settings: Settings, codec: Codec, message_hub: HubSpec):
        self.settings, self.codec, self.message_hub = settings, codec, message_hub
        self.consumer: AIOKafkaConsumer | None = None
        self.producer: AIOKafkaProducer | None = None
        self.commands: CommandClient | None = None
        self.facts: FactsFeed | None = None
        self.router: Router | None = None
        self.keyed: KeyedConsumer | None = None
        self._running = False

    async def start(self) -> None:
        s = self.settings
        self.producer = AIOKafkaProducer(bootstrap_servers=s.kafka_bootstrap, acks="all", enable_idempotence=True)
        await self.producer.start()
        self.commands = CommandClient(s, self.codec, [self.message_hub])
        await self.commands.start()
        self.facts = FactsFeed(s, self.codec)
        await self.facts.start()
        dead_letters = DeadLetters(self.producer, self.codec, PROCESS, s.topic(DLQ_TOPIC), event="inbound item dead-lettered")
        self.router = Router(self.codec, self.facts, self.commands, dead_letters.publish, s.facebook_app_id)
        self.consumer = group_consumer(s, [SOURCE_TOPIC], CONSUMER_GROUP)
        await self.consumer.start()
        # The ingress key is the conversation's platform/account/contact: its items stay in order.
        self.keyed = KeyedConsumer(
            self.consumer,
            self.router.handle,
            process=PROCESS,
            hub="message",
            dead_letters=dead_letters,
            is_transient=is_transient,
            error_type="RouterError",
            concurrency=MAX_IN_FLIGHT,
            max_records=500,
            on_retry=lambda exc: ROUTER_RETRIES.labels(type(exc).__name__).inc(),
        )
        self._running = True
        log.info("router started", topic=s.topic(SOURCE_TOPIC), group=s.topic(CONSUMER_GROUP))

    async def stop(self) -> None:
        self._running = False
        for closing in (self.consumer, self.commands, self.producer):
            if closing is not None:
                try:
                    await closing.stop()
                except Exception as exc:  # stopping anyway: report, do not mask the others
                    log.warning("stopping a client failed", error=str(exc))
        if self.facts is not None:
            await self.facts.stop()

    @property
    def healthy(self) -> bool:
        return self._running

    @property
    def handled(self) -> int:
        return self.keyed.handled if self.keyed is not None else 0

    async def run(self) -> None:
        assert self.keyed is not None
        await self.keyed.run()

    async def handle_batch(self, batches: dict[TopicPartition, list]) -> None:
        assert self.keyed is not None
        await self.keyed.handle_batch(batches)
