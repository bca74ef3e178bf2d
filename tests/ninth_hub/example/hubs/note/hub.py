"""The Note hub's declaration to the shared machinery (processor, CLI, topics, docs)."""

from hubs.note.aggregate import Note, handle
from hubs.note.commands import COMMANDS, EditNote, OpenNote

from infra.hub import HubSpec

HUB = HubSpec(
    name="note",
    grpc_port=50060,
    ops_index=10,
    aggregate=Note,
    commands=COMMANDS,
    handle=handle,
    cli_verbs={"open": OpenNote, "edit": EditNote},
    aggregate_option="note",
)
