"""The delivery state machine of an outbound message, pure. Receipts may overtake
each other (a read receipt before the delivery one), so a status may skip ahead
but never go back; failed is terminal except for a retry, which re-queues or
attempts again.

`sending` is the intent a spoke records before it calls the platform: a second
attempt finds it and knows the first one's outcome is unknown (the spoke may
have died between the call and reporting it), instead of sending blindly again."""

from __future__ import annotations

from collections.abc import Mapping

QUEUED, SENDING, SENT, DELIVERED, READ, FAILED = "queued", "sending", "sent", "delivered", "read", "failed"
STATUSES = (QUEUED, SENDING, SENT, DELIVERED, READ, FAILED)
"""Delivery statuses of an outbound message; it is recorded as queued."""
RECEIVED = "received"
"""The one status of an inbound message: it has no delivery to follow."""

TRANSITIONS: Mapping[str, frozenset[str]] = {
    QUEUED: frozenset({SENDING, SENT, DELIVERED, READ, FAILED}),
    SENDING: frozenset({SENT, DELIVERED, READ, FAILED}),
    SENT: frozenset({DELIVERED, READ, FAILED}),
    DELIVERED: frozenset({READ}),
    READ: frozenset(),
    FAILED: frozenset({QUEUED, SENDING}),
}
ALREADY_SENT = frozenset({SENT, DELIVERED, READ})
"""Statuses in which the platform has the message: a new attempt must not send it."""


def can_move(current: str, new: str) -> bool:
    """True if an outbound message in `current` may move to `new`. Staying in the
    same status is not a move (a repeated receipt changes nothing)."""
    return new in TRANSITIONS.get(current, frozenset())
