"""The inbound-message saga's definition through the Saga aggregate: the happy
path, a failure at every step compensating exactly the done steps in reverse, a
failing release of the reservation leaving the saga needing attention, steps that
the routing decision skips, results flowing into later steps, and the trigger that
turns a MessageRouted into the saga's input."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest

from hubs.saga.commands import RecordStepResult, StartSaga
from hubs.saga.definition import SagaView
from sagas.inbound_message.definition import INBOUND_MESSAGE, saga_id_of, start
from tests.unit.test_saga_aggregate import Story

STEPS = [s.name for s in INBOUND_MESSAGE.steps]
WALLET = str(uuid.uuid4())
INPUT = {
    "tenant_id": "acme",
    "wallet_id": WALLET,
    "charge_minor": 5,
    "conversation_id": "facebook/104857600777/2400001",
    "message_id": "m_1",
    "contact_id": "2400001",
    "channel": "facebook",
    "channel_account_id": "104857600777",
    "routed_to": "botpress",
    "app_id": "app-1",
    "rule": "Routed",
    "text": "hello, call me on +33 6 12 34 56 78",
    "choice": "",
    "attachments": ["https://cdn.example/1.png"],
    "received_at": "2026-11-22T03:00:00+00:00",
}
REPLIES = [{"message_id": "bot-1", "text": "echo: hello"}]
RESULTS = {
    "ask_bot": {"replies": REPLIES},
    "record_customer": {"partner_id": 7, "created": True},
    "store_attachments": {"keys": ["conv/m_1/0-1.png"]},
}


class MessageStory(Story):
    def __init__(self, **changes) -> None:
        super().__init__()
        self.input = {**INPUT, **changes}
        self.results = dict(RESULTS)

    def start(self):
        return self.run(StartSaga(self.meta(), saga_type="inbound_message", input_json=json.dumps(self.input)))

    def answer(self, succeeded: bool = True, detail: str = "ok"):
        pending = self.saga.pending
        result = self.results.get(pending["step"], {}) if succeeded and pending["kind"] == "action" else {}
        return self.run(RecordStepResult(self.meta(), pending["step"], pending["attempt"], succeeded, detail, json.dumps(result)))

    def steps_run(self) -> list[str]:
        seen = []
        while self.saga.status != "completed":
            seen.append(self.pending()[1])
            assert self.answer().accepted
        return seen

    def compensations(self) -> list[str]:
        """Answer every compensation with success; the compensating commands, in order."""
        seen = []
        while self.saga.status == "compensating":
            seen.append(self.pending_request())
            assert self.answer().accepted
        return seen

    def pending_request(self) -> str:
        return self._last_request.command_type.rsplit(".", 1)[-1]

    def run(self, command):
        decision = super().run(command)
        for event in decision.events:
            if type(event).__name__ in ("StepRequested", "CompensationRequested"):
                self._last_request = event
        return decision


def test_the_happy_path_reserves_asks_delivers_records_stores_and_captures():
    s = MessageStory()
    s.start()
    sent = []
    while s.saga.status != "completed":
        sent.append((s.pending()[1], s.pending_request(), s._last_request.target_hub))
        s.answer()
    assert sent == [
        ("reserve_charge", "ReserveFunds", "wallet"),
        ("ask_bot", "AskBot", "spoke.botpress"),
        ("deliver_reply", "SendReply", "spoke.facebook"),
        ("record_customer", "UpsertPartner", "spoke.odoo"),
        ("store_attachments", "StoreAttachments", "spoke.minio"),
        ("capture_charge", "CaptureFunds", "wallet"),
    ]


def test_the_charge_is_reserved_and_captured_under_one_reservation_id_on_the_tenants_wallet():
    s = MessageStory()
    reserve = json.loads(s.start().events[-1].command_json)
    while s.pending()[1] != "capture_charge":
        s.answer()
    capture = json.loads(s._last_request.command_json)
    assert reserve["meta"]["aggregate_id"] == capture["meta"]["aggregate_id"] == WALLET
    assert reserve["reservation_id"] == capture["reservation_id"] == "message/m_1" and reserve["amount"] == 5


EXPECTED = {
    "reserve_charge": [],
    "ask_bot": ["ReleaseFunds"],
    "deliver_reply": ["ReleaseFunds"],
    "record_customer": ["ReleaseFunds"],
    "store_attachments": ["ArchiveCreatedPartner", "ReleaseFunds"],
    "capture_charge": ["DeleteAttachments", "ArchiveCreatedPartner", "ReleaseFunds"],
}


@pytest.mark.parametrize("failing", STEPS)
def test_a_failure_at_each_step_releases_the_reservation_and_undoes_what_was_done_in_reverse(failing):
    s = MessageStory()
    s.start()
    s.succeed_until(failing)
    attempts = INBOUND_MESSAGE.step(failing).max_attempts
    s.fail_attempts(attempts)
    assert s.compensations() == EXPECTED[failing]
    assert s.saga.status == "compensated"


def test_a_release_that_keeps_failing_leaves_the_saga_needing_attention_not_stuck():
    s = MessageStory()
    s.start()
    s.succeed_until("deliver_reply")
    s.fail_attempts(3)
    assert s.pending_request() == "ReleaseFunds"
    s.fail_attempts(3)
    assert s.saga.status == "needs_attention" and "reserve_charge (compensation)" in s.saga.error


def test_the_bots_replies_are_what_the_deliver_step_sends_and_the_partner_it_created_is_what_is_archived():
    s = MessageStory()
    s.start()
    s.succeed_until("deliver_reply")
    payload = json.loads(json.loads(s._last_request.command_json)["payload_json"])
    assert payload["replies"] == REPLIES and payload["psid"] == "2400001" and payload["page_id"] == "104857600777"
    s.succeed_until("capture_charge")
    s.fail_attempts(3)
    archive = []
    while s.saga.status == "compensating":
        if s.pending_request() == "ArchiveCreatedPartner":
            archive.append(json.loads(json.loads(s._last_request.command_json)["payload_json"]))
        s.answer()
    assert archive == [{"conversation_id": INPUT["conversation_id"], "message_id": "m_1", "partner_id": 7}]


def test_a_partner_that_existed_before_is_not_archived_on_compensation():
    s = MessageStory()
    s.results["record_customer"] = {"partner_id": 7, "created": False}
    s.start()
    s.succeed_until("capture_charge")
    s.fail_attempts(3)
    assert s.compensations() == ["DeleteAttachments", "ReleaseFunds"]


@pytest.mark.parametrize(
    ("changes", "replies", "expected"),
    [
        ({"routed_to": "agent-inbox", "attachments": []}, REPLIES, ["reserve_charge", "record_customer", "capture_charge"]),
        ({}, [], ["reserve_charge", "ask_bot", "record_customer", "store_attachments", "capture_charge"]),
        ({"channel": "botpress-web", "attachments": []}, REPLIES, ["reserve_charge", "ask_bot", "capture_charge"]),
    ],
    ids=["not-routed-to-the-bot", "bot-gave-no-reply", "not-a-crm-or-reply-channel"],
)
def test_steps_the_routing_decision_or_an_earlier_result_rules_out_are_skipped(changes, replies, expected):
    s = MessageStory(**changes)
    s.results["ask_bot"] = {"replies": replies}
    s.start()
    assert s.steps_run() == expected


def test_a_skipped_step_is_never_compensated():
    s = MessageStory(routed_to="agent-inbox", attachments=[])
    s.start()
    s.succeed_until("capture_charge")
    s.fail_attempts(3)
    assert s.compensations() == ["ArchiveCreatedPartner", "ReleaseFunds"]


def routed(**changes) -> dict:
    record = {
        "envelope": {"tenant_id": "acme", "aggregate_id": "facebook/104857600777/2400001", "event_id": str(uuid.uuid4())},
        "message_id": "m_1",
        "app_id": "app-1",
        "spoke": "botpress",
        "rule": "Routed",
        "reason": "",
        "channel": "facebook",
        "channel_account_id": "104857600777",
        "contact_id": "2400001",
        "text": "hello",
        "attachments": [{"type": "image", "url": "https://cdn.example/1.png"}, {"type": "fallback", "url": ""}],
        "received_at": datetime(2026, 11, 22, 3, 0, tzinfo=UTC),
        "facts": {},
    }
    return {**record, **changes}


def test_a_routed_message_becomes_the_sagas_input_with_the_looked_up_wallet_charge_and_deadlines():
    body = start(routed(), {"wallet_id": WALLET, "charge_minor": 5, "deadlines_s": {"ask_bot": 3.0}})
    assert body == {
        **INPUT,
        "text": "hello",
        "deadlines_s": {"ask_bot": 3.0},
    }


def test_one_saga_per_routed_message_whatever_event_carried_it():
    assert saga_id_of(routed()) == saga_id_of(routed()) != saga_id_of(routed(message_id="m_2"))
    other_tenant = routed()
    other_tenant["envelope"] = {**other_tenant["envelope"], "tenant_id": "globex"}
    assert saga_id_of(other_tenant) != saga_id_of(routed())
    uuid.UUID(saga_id_of(routed()))


def test_a_tenant_without_a_wallet_gets_a_reservation_the_wallet_hub_refuses_not_a_free_message():
    body = start(routed(), {"wallet_id": "", "charge_minor": 5})
    view = SagaView("s-1", "acme", "inbound_message", "corr", body)
    reserve = INBOUND_MESSAGE.step("reserve_charge").action(view)
    assert reserve.amount == 5 and uuid.UUID(reserve.meta.aggregate_id)
    assert reserve.meta.aggregate_id == view.derived_id("no-wallet")


def test_the_bot_is_asked_for_the_routed_app_so_the_spoke_uses_that_subscriptions_own_bot():
    s = MessageStory()
    s.start()
    s.succeed_until("ask_bot")
    payload = json.loads(json.loads(s._last_request.command_json)["payload_json"])
    assert payload["app_id"] == "app-1" and "secret" not in json.dumps(payload)
