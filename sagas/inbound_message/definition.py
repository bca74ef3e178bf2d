"""The inbound-message saga: every message the Message Hub routes runs it.

Reserve the per-message charge on the tenant's wallet → ask the bot → deliver the
reply through Facebook → record the customer in Odoo → store the attachments in
S3/MinIO → capture the reservation. On failure, the done steps are compensated in
reverse: DeleteAttachments, ArchiveCreatedPartner (only a partner this saga
created), ReleaseFunds. Asking the bot changes nothing of ours and a delivered
reply cannot be unsent: those two steps have no compensation. Capturing is last,
so nothing after it can fail.

Which steps run is the routing decision's consequence, never a new decision: the
bot is asked only when the Message Hub routed the message to it; a reply is
delivered only when the bot gave one; customers are recorded for CRM channels;
attachments are stored when there are some. A skipped step is not compensated.

Started with every `MessageRouted`, by the Message hub's processor in the
transaction that records it (the router recorded the tenant's open wallet with
its decision: `record_facts`); a decision recorded without that fact (an older
router's) is started by the saga driver after `lookup`. The saga id is derived
from tenant and message id, so a decision read twice starts one saga.
Input (from the routed message and the settings): {"tenant_id",
"wallet_id", "charge_minor", "conversation_id", "message_id", "contact_id",
"channel", "channel_account_id", "routed_to", "app_id", "rule", "text", "choice", "attachments",
"received_at", "deadlines_s"?}. The message text travels in the saga's input as
it does in `message.events` (the bot and the CRM need it); timeline summaries
never show it, and erasing a contact's data covers `saga.events` too.

A tenant without an open wallet gets no bot answer: the reservation is refused
(the wallet does not exist), the saga ends compensated with that reason, and the
dashboard shows it — a charge the platform cannot take is not given away."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from hubs.message.routing import WALLET_FACT
from hubs.saga.definition import SAGA_NAMESPACE, SagaDefinition, SagaView, SpokeRequest, Step, Trigger
from hubs.wallet.commands import CaptureFunds, ReleaseFunds, ReserveFunds

NAME = "inbound_message"
MESSAGE_ROUTED = "poseidon.message.MessageRouted"
BOT_SPOKE = "botpress"
CRM_CHANNELS = frozenset({"facebook"})
REPLY_CHANNELS = frozenset({"facebook"})
NO_WALLET = "no-wallet"


def saga_id_of(record: Mapping[str, Any]) -> str:
    tenant = record["envelope"]["tenant_id"]
    return str(uuid.uuid5(SAGA_NAMESPACE, f"{NAME}/{tenant}/{record['message_id']}"))


def start(record: Mapping[str, Any], facts: Mapping[str, Any]) -> dict[str, Any]:
    """The saga's input for one routed message (pure)."""
    env = record["envelope"]
    received = record.get("received_at")
    body = {
        "tenant_id": env["tenant_id"],
        "wallet_id": facts.get("wallet_id") or "",
        "charge_minor": int(facts.get("charge_minor", 0)),
        "conversation_id": env["aggregate_id"],
        "message_id": record["message_id"],
        "contact_id": record["contact_id"],
        "channel": record["channel"],
        "channel_account_id": record["channel_account_id"],
        "routed_to": record["spoke"],
        # Which subscription's bot answers (the tenant's own: spokes/botpress/bots.py); never its secret.
        "app_id": record.get("app_id") or "",
        "rule": record["rule"],
        "text": record.get("text") or "",
        "choice": record.get("choice") or "",
        "attachments": [a["url"] for a in record.get("attachments", ()) if a.get("url")],
        "received_at": received.isoformat() if isinstance(received, datetime) else "",
    }
    if facts.get("deadlines_s"):
        body["deadlines_s"] = dict(facts["deadlines_s"])
    return body


async def lookup(reads, settings, record: Mapping[str, Any]) -> dict[str, Any]:
    """The tenant's open wallet (the oldest, if several) from the Wallet read store,
    and the charge and step deadlines from the settings."""
    tenant = record["envelope"]["tenant_id"]
    wallet = await reads.open_wallet_of(tenant)
    return {
        "wallet_id": wallet or "",
        "charge_minor": settings.message_charge_minor,
        "deadlines_s": dict(settings.inbound_saga_deadlines_s),
    }


def record_facts(settings, record: Mapping[str, Any]) -> dict[str, Any] | None:
    """The same facts from the routed message itself: the router recorded the
    tenant's open wallet with its decision (hubs.message.routing.WALLET_FACT), so the
    Message hub's processor starts the saga with the MessageRouted, no lookup. A
    decision recorded without it (an older router's) is left to `lookup`."""
    wallet = record.get("facts", {}).get(WALLET_FACT)
    if wallet is None:
        return None
    return {
        "wallet_id": wallet,
        "charge_minor": settings.message_charge_minor,
        "deadlines_s": dict(settings.inbound_saga_deadlines_s),
    }


def wallet_id(s: SagaView) -> str:
    # No wallet: a stable id no wallet has, so the reservation is refused with the wallet hub's own reason.
    return s.input["wallet_id"] or s.derived_id(NO_WALLET)


def reservation_id(s: SagaView) -> str:
    return f"message/{s.input['message_id']}"[:200]


def spoke(s: SagaView, name: str, action: str, **payload: Any) -> SpokeRequest:
    body = {"conversation_id": s.input["conversation_id"], "message_id": s.input["message_id"], **payload}
    return SpokeRequest(
        meta=s.meta(s.input["conversation_id"]), spoke=name, action=action, payload_json=json.dumps(body, sort_keys=True)
    )


def reserve_charge(s: SagaView) -> ReserveFunds:
    return ReserveFunds(meta=s.meta(wallet_id(s)), reservation_id=reservation_id(s), amount=int(s.input["charge_minor"]))


def release_charge(s: SagaView) -> ReleaseFunds:
    return ReleaseFunds(meta=s.meta(wallet_id(s)), reservation_id=reservation_id(s))


def capture_charge(s: SagaView) -> CaptureFunds:
    return CaptureFunds(meta=s.meta(wallet_id(s)), reservation_id=reservation_id(s))


def ask_bot(s: SagaView) -> SpokeRequest:
    i = s.input
    return spoke(
        s,
        BOT_SPOKE,
        "AskBot",
        channel=i["channel"],
        contact_id=i["contact_id"],
        text=i["text"],
        app_id=i.get("app_id", ""),
        choice=i.get("choice", ""),
    )


def replies(s: SagaView) -> list[dict[str, str]]:
    return list(s.results.get("ask_bot", {}).get("replies", []))


def deliver_reply(s: SagaView) -> SpokeRequest:
    i = s.input
    return spoke(
        s,
        "facebook",
        "SendReply",
        page_id=i["channel_account_id"],
        psid=i["contact_id"],
        last_inbound_at=i.get("received_at", ""),
        replies=replies(s),
    )


def record_customer(s: SagaView) -> SpokeRequest:
    i = s.input
    return spoke(s, "odoo", "UpsertPartner", channel=i["channel"], contact_id=i["contact_id"], text=i["text"])


def archive_created_partner(s: SagaView) -> SpokeRequest | None:
    done = s.results.get("record_customer", {})
    if not done.get("created"):
        return None  # the partner existed before this message: not ours to archive
    return spoke(s, "odoo", "ArchiveCreatedPartner", partner_id=done["partner_id"])


def store_attachments(s: SagaView) -> SpokeRequest:
    return spoke(s, "minio", "StoreAttachments", attachments=s.input["attachments"])


def delete_attachments(s: SagaView) -> SpokeRequest | None:
    keys = s.results.get("store_attachments", {}).get("keys", [])
    return spoke(s, "minio", "DeleteAttachments", keys=keys) if keys else None


INBOUND_MESSAGE = SagaDefinition(
    name=NAME,
    steps=(
        Step("reserve_charge", reserve_charge, release_charge, max_attempts=3, deadline_s=10),
        Step("ask_bot", ask_bot, None, max_attempts=3, deadline_s=30, when=lambda s: s.input.get("routed_to") == BOT_SPOKE),
        Step(
            "deliver_reply",
            deliver_reply,
            None,
            max_attempts=3,
            deadline_s=30,
            when=lambda s: s.input.get("channel") in REPLY_CHANNELS and bool(replies(s)),
        ),
        Step(
            "record_customer",
            record_customer,
            archive_created_partner,
            max_attempts=3,
            deadline_s=30,
            when=lambda s: s.input.get("channel") in CRM_CHANNELS,
        ),
        Step(
            "store_attachments",
            store_attachments,
            delete_attachments,
            max_attempts=3,
            deadline_s=60,
            when=lambda s: bool(s.input.get("attachments")),
        ),
        Step("capture_charge", capture_charge, None, max_attempts=3, deadline_s=10),
    ),
    trigger=Trigger(
        topic="message.events", event=MESSAGE_ROUTED, saga_id=saga_id_of, start=start, lookup=lookup, facts=record_facts
    ),
)
