"""The inbound-message saga's definition through the Saga aggregate: the happy
path, a failure at every step compensating exactly the done steps in reverse, and
a failing release of the reservation leaving the saga needing attention."""

from __future__ import annotations

import json
import uuid

import pytest

from hubs.saga.commands import StartSaga
from sagas.inbound_message.definition import INBOUND_MESSAGE
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
}


class MessageStory(Story):
    def start(self):
        return self.run(StartSaga(self.meta(), saga_type="inbound_message", input_json=json.dumps(INPUT)))

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
