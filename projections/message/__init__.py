"""Message read model: conversations, messages and their delivery-status history
in the `message` schema."""

from pathlib import Path

from infra.projection import ProjectionSpec
from projections.message.mapping import apply

PROJECTION = ProjectionSpec(
    name="message",
    topics=("message.events",),
    migrations=Path(__file__).parent / "migrations",
    apply=apply,
    tables=("conversations", "messages", "message_status_history"),
)
