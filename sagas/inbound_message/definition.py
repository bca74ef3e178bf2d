"""The inbound-message saga, as pure data (a skeleton: the definition and its
compensations are final, its wiring is not — the router does not start it yet and
the driver does not deliver SpokeRequests yet, so a started one fails its first
spoke step at the deadline and compensates).

Reserve the per-message charge on the tenant's wallet → ask the bot → deliver the
reply through Facebook → record the customer in Odoo → store the attachments in
S3/MinIO → capture the reservation. On failure, the done steps are compensated in
reverse: DeleteAttachments, ArchiveCreatedPartner (archives the Odoo partner only
if this saga created it), ReleaseFunds. Asking the bot changes nothing of ours
and a delivered reply cannot be unsent: those two steps have no compensation.
Capturing is last, so nothing after it can fail.

Input (no message text, no PII: spokes read the message by id): {"tenant_id",
"wallet_id", "charge_minor", "conversation_id", "message_id", "contact_id"}."""

from __future__ import annotations

import json

from hubs.wallet.commands import CaptureFunds, ReleaseFunds, ReserveFunds
from sagas.definition import SagaDefinition, SagaView, SpokeRequest, Step

NAME = "inbound_message"


def reservation_id(s: SagaView) -> str:
    return f"message/{s.input['message_id']}"[:200]


def spoke(s: SagaView, name: str, action: str, **payload: str) -> SpokeRequest:
    body = {"conversation_id": s.input["conversation_id"], "message_id": s.input["message_id"], **payload}
    return SpokeRequest(
        meta=s.meta(s.input["conversation_id"]), spoke=name, action=action, payload_json=json.dumps(body, sort_keys=True)
    )


def reserve_charge(s: SagaView) -> ReserveFunds:
    return ReserveFunds(meta=s.meta(s.input["wallet_id"]), reservation_id=reservation_id(s), amount=int(s.input["charge_minor"]))


def release_charge(s: SagaView) -> ReleaseFunds:
    return ReleaseFunds(meta=s.meta(s.input["wallet_id"]), reservation_id=reservation_id(s))


def capture_charge(s: SagaView) -> CaptureFunds:
    return CaptureFunds(meta=s.meta(s.input["wallet_id"]), reservation_id=reservation_id(s))


INBOUND_MESSAGE = SagaDefinition(
    name=NAME,
    steps=(
        Step("reserve_charge", reserve_charge, release_charge, max_attempts=3, deadline_s=10),
        Step("ask_bot", lambda s: spoke(s, "botpress", "AskBot"), None, max_attempts=2, deadline_s=30),
        Step("deliver_reply", lambda s: spoke(s, "facebook", "SendReply"), None, max_attempts=3, deadline_s=30),
        Step(
            "record_customer",
            lambda s: spoke(s, "odoo", "UpsertPartner", contact_id=s.input["contact_id"]),
            lambda s: spoke(s, "odoo", "ArchiveCreatedPartner", contact_id=s.input["contact_id"]),
            max_attempts=3,
            deadline_s=30,
        ),
        Step(
            "store_attachments",
            lambda s: spoke(s, "minio", "StoreAttachments"),
            lambda s: spoke(s, "minio", "DeleteAttachments"),
            max_attempts=3,
            deadline_s=60,
        ),
        Step("capture_charge", capture_charge, None, max_attempts=3, deadline_s=10),
    ),
)
