"""Run inside a copy of the tree with the example Note hub added: prints, as JSON,
what the shared machinery derived from the hub's folders alone."""

from __future__ import annotations

import json
import uuid

from click.testing import CliRunner

from base.settings import Settings
from infra.command_client import new_meta
from infra.hub import decide, event_record
from poseidon import bootstrap, docs
from poseidon.cli import main as cli

hub = bootstrap.hub("note")
codec = bootstrap.codec(Settings.from_env({}))
command_cls = hub.cli_verbs["open"]
note_id = str(uuid.uuid4())
decision = decide(hub, None, command_cls(meta=new_meta(note_id, "acme", actor="test"), title="Groceries"))
event = decision.events[0]
name = hub.event_name(event)
fields = [f["name"] for f in bootstrap.catalog().latest(name).parsed["fields"] if f["name"] != "envelope"]
record = event_record(new_meta(note_id, "acme", actor="test"), name, event, fields, event_id=str(uuid.uuid4()))
decoded = codec.decode(codec.encode(name, record))
statements = bootstrap.projection("note").apply(decoded.name, decoded.record)
print(
    json.dumps(
        {
            "hubs": sorted(bootstrap.hubs()),
            "event": name,
            "rejected": decision.rejection is not None,
            "statements": len(statements),
            "topics": sorted(t.name for t in bootstrap.all_topics() if t.name.startswith("note.")),
            "cli_help": CliRunner().invoke(cli, ["note", "--help"]).output,
            "docs_has_note": "## Note hub" in docs.render(),
        }
    )
)
