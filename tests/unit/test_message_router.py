"""The router's handling of each kind of inbound item, without a broker: records
encoded with the real codec, the routing facts from a fake of the hubs' answers,
and the Message hub's real aggregate behind a fake of the command client (same
`send` interface, same duplicate-command-id answer as the processor). What
travels over Kafka and gRPC is tested in tests/integration/test_router.py."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import pytest
from aiokafka.errors import KafkaConnectionError

from hubs.app.guards import GuardDecision
from hubs.message.aggregate import conversation_id
from hubs.message.commands import RecordDeliveryReceipt, RecordOutboundMessage, RouteMessage, UpdateDeliveryStatus
from hubs.message.hub import HUB
from hubs.message.router import COMMAND_NAMESPACE, Router, command_id, is_transient
from hubs.message.routing import BillingVerdict, ChannelOwner, InboundItem, RoutingFacts, SubscriptionVerdict
from infra.command_client import CommandResult, CommandTimeout, new_meta
from infra.hub import decide
from schemas.codec import Catalog, Codec

CODEC = Codec(Catalog.load())
PAGE, UNKNOWN_PAGE = "104857600123", "999000999"
BOT = "7b1f3c2a-9d4e-4f5a-8b6c-1d2e3f4a5b6c"
SENT_AT = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


def inbound(kind: str = "message", *, event_id: str | None = None, platform: str = "facebook", account: str = PAGE,
            contact: str = "psid-1", message_id: str = "mid.1", text: str = "hello", **fields) -> bytes:  # fmt: skip
    event_id = event_id or str(uuid.uuid4())
    record = {
        "envelope": {
            "event_id": event_id, "event_type": "poseidon.ingress.InboundReceived",
            "aggregate_id": f"{platform}/{account}/{contact}", "aggregate_version": 0, "tenant_id": "",
            "correlation_id": f"corr-{event_id[:8]}", "causation_id": "", "occurred_at": SENT_AT, "actor": "ingress",
            "previous_hash": "",
        },
        "platform": platform, "kind": kind, "account_id": account, "contact_id": contact, "message_id": message_id,
        "text": text, "sent_at": SENT_AT, "raw": "{}", **fields,
    }  # fmt: skip
    return CODEC.encode("poseidon.ingress.InboundReceived", record)


@dataclass
class Record:
    value: bytes
    key: bytes = b"facebook/104857600123/psid-1"
    topic: str = "ingress.inbound"
    partition: int = 0
    offset: int = 0


class InMemoryMessageHub:
    """The Message hub as `CommandClient.send` shows it: the real aggregate decides,
    a repeated command id is answered with its first outcome (duplicate)."""

    def __init__(self):
        self.aggregates: dict[str, object] = {}
        self.outcomes: dict[tuple[str, str], CommandResult] = {}
        self.sent: list = []
        self.events: list[tuple[str, str, object]] = []

    async def send(self, command, timeout: float = 30.0) -> CommandResult:
        self.sent.append(command)
        meta = command.meta
        earlier = self.outcomes.get((meta.aggregate_id, meta.command_id))
        if earlier is not None:
            return replace(earlier, duplicate=True)
        decision = decide(HUB, self.aggregates.get(meta.aggregate_id), command)
        names = [HUB.event_name(e) for e in decision.events]
        if decision.accepted:
            self.aggregates[meta.aggregate_id] = decision.aggregate
            self.events += [(meta.aggregate_id, name, e) for name, e in zip(names, decision.events, strict=True)]
        rejection = decision.rejection
        result = CommandResult(
            meta.command_id, decision.accepted, decision.version, rejection.rule if rejection else "",
            str(rejection) if rejection else "", tuple(str(uuid.uuid4()) for _ in names), tuple(names), False,
        )  # fmt: skip
        self.outcomes[(meta.aggregate_id, meta.command_id)] = result
        return result

    def event_names(self) -> list[str]:
        return [name.rsplit(".", 1)[1] for _, name, _ in self.events]


class FakeFacts:
    """The hubs' answers: acme owns PAGE and subscribes to one bot, entitled."""

    def __init__(self, *, entitled: bool = True, connected: bool = True):
        self.owners = {("facebook", PAGE): ChannelOwner("acme", connected)}
        self.billing = BillingVerdict(entitled, "ENTITLED" if entitled else "NO_ENTITLEMENT", 10 if entitled else 0)
        self.asked = 0

    async def owner(self, channel: str, account_id: str) -> ChannelOwner | None:
        self.asked += 1
        return self.owners.get((channel, account_id))

    def recorded_positions(self) -> dict[str, str]:
        return {"positions.tenant.events": "3 0 1 0"}

    async def gather(self, item: InboundItem) -> RoutingFacts:
        owner = await self.owner(item.channel, item.account_id)
        if owner is None or not owner.connected:
            return RoutingFacts(owner)
        guard = GuardDecision(True, "GuardsPassed", "any channel, any page, at any time")
        return RoutingFacts(owner, (SubscriptionVerdict(BOT, "bot", guard),), self.billing)


class Setup:
    def __init__(self, **facts):
        self.hub, self.facts, self.dead = InMemoryMessageHub(), FakeFacts(**facts), []

        async def sink(record, reason: str, error_type: str) -> None:
            self.dead.append((record, reason, error_type))

        self.router = Router(CODEC, self.facts, self.hub, sink)

    async def handle(self, value: bytes, **record) -> str:
        return await self.router.handle(Record(value, **record))


ACME = conversation_id("acme", "facebook", PAGE, "psid-1")


# -- messages and postbacks -----------------------------------------------------------


async def test_a_message_on_a_connected_page_is_recorded_with_its_routing_decision_in_the_tenants_conversation():
    setup = Setup()
    event_id = str(uuid.uuid4())

    outcome = await setup.handle(inbound(event_id=event_id, attachments=[{"type": "image", "url": "https://cdn/1.jpg"}]))

    assert outcome == "routed"
    [command] = setup.hub.sent
    assert isinstance(command, RouteMessage)
    assert (command.meta.aggregate_id, command.meta.tenant_id, command.meta.actor) == (ACME, "acme", "message-router")
    assert command.meta.command_id == str(uuid.uuid5(COMMAND_NAMESPACE, f"{event_id}/route"))
    assert (command.meta.correlation_id, command.meta.causation_id) == (f"corr-{event_id[:8]}", event_id)
    assert (command.channel, command.channel_account_id, command.contact_id, command.received_at) == (
        "facebook", PAGE, "psid-1", SENT_AT,
    )  # fmt: skip
    assert (command.routed, command.rule, command.app_id, command.spoke) == (True, "Routed", BOT, "botpress")
    assert command.attachments == [{"type": "image", "url": "https://cdn/1.jpg"}]
    assert command.facts["positions.tenant.events"] == "3 0 1 0", "the decision records where its facts were read"
    assert command.facts["tenant"] == "acme"
    assert setup.hub.event_names() == ["ConversationStarted", "InboundMessageRecorded", "MessageRouted"]


async def test_a_postback_is_routed_like_a_message():
    setup = Setup()

    assert await setup.handle(inbound("postback", message_id="postback:psid-1:1772443800000", text="Get started")) == "routed"


async def test_reading_the_same_record_again_after_a_crash_applies_nothing_twice():
    setup = Setup()
    value = inbound(event_id=str(uuid.uuid4()))

    first, again = await setup.handle(value), await setup.handle(value)

    assert (first, again) == ("routed", "routed")
    assert setup.hub.sent[0].meta.command_id == setup.hub.sent[1].meta.command_id
    assert setup.hub.event_names().count("MessageRouted") == 1


async def test_ten_redeliveries_of_one_message_make_one_decision():
    setup = Setup()

    outcomes = [await setup.handle(inbound(message_id="mid.same")) for _ in range(10)]

    assert sorted(outcomes) == ["duplicate"] * 9 + ["routed"]
    assert setup.hub.event_names().count("InboundMessageRecorded") == 1
    assert setup.hub.event_names().count("MessageRouted") == 1
    assert not setup.dead


async def test_a_message_on_a_page_no_tenant_connected_is_kept_and_rejected_under_the_platform_tenant():
    setup = Setup()

    outcome = await setup.handle(inbound(account=UNKNOWN_PAGE))

    assert outcome == "rejected"
    [command] = setup.hub.sent
    assert (command.meta.tenant_id, command.meta.aggregate_id) == (
        "platform",
        conversation_id("platform", "facebook", UNKNOWN_PAGE, "psid-1"),
    )
    assert (command.routed, command.rule) == (False, "UnknownChannelAccount")
    assert setup.hub.event_names()[-1] == "MessageRejected"


async def test_an_unentitled_tenants_message_is_rejected_with_the_billing_reason():
    setup = Setup(entitled=False)

    assert await setup.handle(inbound()) == "rejected"

    [command] = setup.hub.sent
    assert command.rule == "NotEntitled" and command.reason.startswith("NO_ENTITLEMENT")


async def test_a_message_the_hub_refuses_as_invalid_goes_to_the_dead_letter_topic_whole():
    setup = Setup()
    value = inbound(text="x" * 20_001)

    assert await setup.handle(value) == "dead_lettered"

    [(record, reason, error_type)] = setup.dead
    assert record.value == value and error_type == "Unhandleable"
    assert reason.startswith("RouteMessage refused: InvalidCommand")
    assert setup.hub.events == []


# -- receipts, echoes, bot replies ------------------------------------------------------


async def reply_sent(setup: Setup, mid: str) -> None:
    """The contact wrote; our reply out-1 was recorded and the spoke reported it sent as `mid`."""
    await setup.handle(inbound())
    await setup.hub.send(RecordOutboundMessage(new_meta(ACME, "acme"), message_id="out-1", text="hi"))
    await setup.hub.send(UpdateDeliveryStatus(new_meta(ACME, "acme"), "out-1", "sent", platform_message_id=mid))


async def test_a_delivery_receipt_delivers_the_outbound_messages_it_names():
    setup = Setup()
    await reply_sent(setup, "m_out_1")

    outcome = await setup.handle(inbound("delivery", message_id="", text="", mids=["m_out_1"], watermark=0))

    assert outcome == "receipt_applied"
    command = setup.hub.sent[-1]
    assert isinstance(command, RecordDeliveryReceipt)
    assert (command.meta.aggregate_id, command.receipt, command.platform_message_ids) == (ACME, "delivery", ["m_out_1"])
    assert setup.hub.aggregates[ACME].recent["out-1"] == "delivered"


async def test_a_read_receipt_reads_up_to_its_watermark_and_a_repeated_one_changes_nothing():
    setup = Setup()
    await reply_sent(setup, "m_out_1")
    later = int(datetime.now(UTC).timestamp() * 1000) + 60_000

    assert await setup.handle(inbound("read", message_id="", text="", watermark=later)) == "receipt_applied"
    assert await setup.handle(inbound("read", message_id="", text="", watermark=later)) == "receipt_unchanged"
    assert setup.hub.aggregates[ACME].recent["out-1"] == "read"


async def test_a_receipt_naming_more_than_a_hundred_messages_is_sent_in_chunks_with_their_own_ids():
    setup = Setup()
    await reply_sent(setup, "m_out_1")
    event_id = str(uuid.uuid4())

    await setup.handle(inbound("delivery", event_id=event_id, message_id="", text="", mids=[f"m_{i}" for i in range(150)]))

    receipts = [c for c in setup.hub.sent if isinstance(c, RecordDeliveryReceipt)]
    assert [len(c.platform_message_ids) for c in receipts] == [100, 50]
    assert [c.meta.command_id for c in receipts] == [command_id(event_id, "receipt-0"), command_id(event_id, "receipt-1")]


async def test_receipts_of_unknown_pages_or_conversations_are_counted_and_dropped_not_dead_lettered():
    setup = Setup()

    assert await setup.handle(inbound("read", account=UNKNOWN_PAGE, message_id="", text="", watermark=1)) == "unknown_account"
    assert await setup.handle(inbound("read", contact="psid-new", message_id="", text="", watermark=1)) == "no_conversation"
    assert not setup.dead


OUR_APP, INBOX = "1517776481860111", "263902037430900"


async def test_a_thread_the_page_inbox_takes_is_held_by_it_and_passing_it_back_returns_it_to_the_bot():
    setup = Setup()
    setup.router.own_app_id = OUR_APP
    await setup.handle(inbound())

    taken = await setup.handle(inbound("handover", message_id="handover:psid-1:1", text=INBOX))
    assert taken == "handover_recorded"
    assert setup.hub.sent[-1].agent_id == f"facebook-app:{INBOX}" and setup.hub.sent[-1].meta.tenant_id == "acme"
    assert await setup.handle(inbound(message_id="mid.2")) == "routed"
    assert setup.hub.sent[-1].spoke == "botpress"  # the router's decision; the hub records it HeldByAgent
    assert setup.hub.event_names()[-1] == "MessageRouted"

    back = await setup.handle(inbound("handover", message_id="handover:psid-1:2", text=OUR_APP))
    assert back == "handover_recorded" and setup.hub.event_names()[-1] == "ConversationHandedBack"
    again = await setup.handle(inbound("handover", message_id="handover:psid-1:3", text=OUR_APP))
    assert again == "handover_unchanged" and not setup.dead  # the bot has it already: NotWithAgent changes nothing


async def test_a_handover_on_an_unknown_page_or_conversation_changes_nothing():
    setup = Setup()
    setup.router.own_app_id = OUR_APP
    assert await setup.handle(inbound("handover", account=UNKNOWN_PAGE, text=INBOX)) == "unknown_account"
    assert await setup.handle(inbound("handover", text=INBOX)) == "handover_unchanged"  # no conversation yet
    assert not setup.dead


async def test_an_echo_of_our_own_message_is_ignored_without_asking_anyone():
    setup = Setup()

    assert await setup.handle(inbound("echo")) == "ignored"
    assert setup.hub.sent == [] and setup.facts.asked == 0


async def test_a_bot_reply_is_recorded_as_an_outbound_message_of_the_conversation_it_names():
    setup = Setup()
    await setup.handle(inbound())
    value = inbound(
        "bot_reply", platform="botpress", account="bot-1", contact=ACME, message_id="bp-msg-1", text="Hi!", tenant_hint="acme"
    )

    assert await setup.handle(value) == "reply_recorded"
    assert await setup.handle(value) == "reply_recorded"  # re-read: the same command id, answered

    command = setup.hub.sent[-1]
    assert isinstance(command, RecordOutboundMessage)
    assert (command.meta.aggregate_id, command.meta.tenant_id, command.message_id, command.text) == (
        ACME,
        "acme",
        "botpress:bp-msg-1",
        "Hi!",
    )
    assert setup.hub.event_names().count("OutboundMessageRecorded") == 1


@pytest.mark.parametrize(
    "fields",
    [
        {"tenant_hint": "", "contact": ACME},
        {"tenant_hint": "acme", "contact": "psid-1"},
        {"tenant_hint": "acme", "contact": ACME.upper()},
    ],
    ids=["no-tenant", "not-a-conversation-id", "uppercase-id"],
)
async def test_a_bot_reply_that_names_no_tenant_or_no_conversation_is_dead_lettered(fields):
    setup = Setup()
    contact = fields.pop("contact")

    assert await setup.handle(inbound("bot_reply", platform="botpress", contact=contact, text="Hi!", **fields)) == "dead_lettered"
    assert setup.hub.sent == []


async def test_a_bot_reply_to_another_tenants_conversation_is_refused_by_the_hub_and_dead_lettered():
    setup = Setup()
    await setup.handle(inbound())

    outcome = await setup.handle(inbound("bot_reply", platform="botpress", contact=ACME, text="Hi!", tenant_hint="globex"))

    assert outcome == "dead_lettered" and "TenantMismatch" in setup.dead[0][1]


# -- bad input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"\x00garbage", ""),
        (CODEC.encode("poseidon.message.commands.CloseConversation", {
            "meta": {"command_id": "c", "aggregate_id": "a", "tenant_id": "t", "correlation_id": "c", "causation_id": "c",
                     "issued_at": SENT_AT, "actor": "a"}, "reason": ""}), "is not poseidon.ingress.InboundReceived"),
        (inbound("reaction"), "kind 'reaction'"),
        (inbound(platform="whatsapp"), "platform 'whatsapp'"),
    ],
    ids=["garbage", "another-schema", "unknown-kind", "unknown-platform"],
)  # fmt: skip
async def test_what_the_router_cannot_read_or_does_not_know_goes_to_the_dead_letter_topic(value, reason):
    setup = Setup()

    assert await setup.handle(value) == "dead_lettered"

    [(record, why, _)] = setup.dead
    assert record.value == value and reason in why
    assert setup.hub.sent == []


def test_command_ids_are_the_same_for_the_same_event_and_step_and_differ_otherwise():
    event = str(uuid.uuid4())

    assert command_id(event, "route") == command_id(event, "route")
    assert len({command_id(event, "route"), command_id(event, "reply"), command_id(str(uuid.uuid4()), "route")}) == 3


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (CommandTimeout("no result"), True),
        (TimeoutError(), True),  # the routing facts not current in time
        (KafkaConnectionError(), True),
        (ConnectionRefusedError(), True),
        (ValueError("bug"), False),
        (KeyError("bug"), False),
    ],
)
def test_only_what_a_retry_can_fix_is_retried(error, transient):
    assert is_transient(error) is transient


async def test_a_choice_longer_than_the_hub_keeps_is_left_out_and_the_message_still_routed():
    setup = Setup()
    assert await setup.handle(inbound(choice="P" * 1001)) == "routed"
    assert setup.hub.sent[-1].choice == "" and not setup.dead
    assert await setup.handle(inbound(message_id="mid.2", choice="RED")) == "routed"
    assert setup.hub.sent[-1].choice == "RED"
