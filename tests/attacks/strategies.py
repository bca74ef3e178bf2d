"""Hypothesis strategies the attack suite shares: arbitrary JSON, well-formed
platform payloads with one part of them broken, and records shaped by an Avro
schema but filled with hostile values. Pure: no I/O."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import strategies as st

from tests.standins.facebook import (
    attachment,
    delivery_event,
    echo_event,
    message_event,
    postback_event,
    read_event,
    webhook_body,
)

PAGE, PSID = "104010101010101", "2400001"
TS = 1763812800000

# Text that has broken parsers before: empty, blank, control characters, RTL and
# zero-width marks, astral-plane characters, lone surrogates escaped in JSON,
# format strings, SQL and path fragments, very long ids.
NASTY_TEXT = [
    "",
    " ",
    "\x00",
    "\n\r\t",
    "\u202e\u200b",
    "😀" * 3,
    "%s%n{0}",
    "'; DROP TABLE x; --",
    "../../etc/passwd",
    "a" * 5000,
    "9" * 40,
    "-1",
    "null",
]
NASTY_INTS = [0, -1, 1, 2**31 - 1, -(2**31), 2**53 + 1, 2**63 - 1, -(2**63), 10**30]


def scalars() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.none(),
        st.booleans(),
        st.sampled_from(NASTY_INTS),
        st.integers(),
        st.floats(allow_nan=False, allow_infinity=False),
        st.sampled_from(NASTY_TEXT),
        st.text(max_size=30),
    )


def json_values(max_leaves: int = 25) -> st.SearchStrategy[Any]:
    """Any JSON document (NaN and infinities excluded: json.dumps would write non-JSON)."""
    return st.recursive(
        scalars(),
        lambda children: st.one_of(st.lists(children, max_size=5), st.dictionaries(st.text(max_size=12), children, max_size=5)),
        max_leaves=max_leaves,
    )


def _paths(value: Any, path: tuple = ()) -> list[tuple]:
    """Every path into a JSON value (the root included)."""
    found = [path]
    if isinstance(value, Mapping):
        for k, v in value.items():
            found += _paths(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found += _paths(v, (*path, i))
    return found


def _set(value: Any, path: tuple, replace: Callable[[Any], Any]) -> Any:
    """A copy of `value` with the node at `path` replaced by `replace(node)`
    (which returns DELETE to drop it from its parent)."""
    if not path:
        return replace(value)
    head, rest = path[0], path[1:]
    copy = dict(value) if isinstance(value, Mapping) else list(value)
    new = _set(copy[head], rest, replace)
    if new is DELETE:
        del copy[head]
    else:
        copy[head] = new
    return copy


DELETE = object()


@st.composite
def broken(draw, valid: Any) -> Any:
    """`valid` with one node replaced by arbitrary JSON, deleted, or turned into
    another type of the same content (a string of the number, a list of the object)."""
    path = draw(st.sampled_from(_paths(valid)))
    how = draw(st.sampled_from(["replace", "delete", "stringify", "wrap", "empty"]))
    if how == "delete" and path:
        return _set(valid, path, lambda _: DELETE)
    if how == "stringify":
        return _set(valid, path, lambda node: json.dumps(node))
    if how == "wrap":
        return _set(valid, path, lambda node: [node])
    if how == "empty":
        return _set(valid, path, lambda node: type(node)() if isinstance(node, (dict, list, str)) else None)
    replacement = draw(json_values(8))
    return _set(valid, path, lambda _: replacement)


def messenger_bodies() -> st.SearchStrategy[dict]:
    """Well-formed Messenger webhook bodies of every item kind, batched."""
    events = st.sampled_from(
        [
            message_event(PAGE, PSID, "hello", mid="m_1", timestamp_ms=TS),
            message_event(PAGE, PSID, mid="m_2", timestamp_ms=TS, attachments=[attachment("image", "https://cdn.example/x")]),
            message_event(PAGE, PSID, "yes", mid="m_3", timestamp_ms=TS, quick_reply_payload="YES", reply_to="m_0"),
            postback_event(PAGE, PSID, "MENU", title="Menu", timestamp_ms=TS),
            delivery_event(PAGE, PSID, ["m_out_1"], TS),
            read_event(PAGE, PSID, TS, timestamp_ms=TS),
            echo_event(PAGE, PSID, "ok", mid="m_echo", timestamp_ms=TS),
        ]
    )
    return st.lists(events, min_size=1, max_size=4).map(lambda evs: webhook_body(*evs, time_ms=TS))


def botpress_pushes() -> st.SearchStrategy[dict]:
    """Well-formed Botpress `message_created` pushes (bot and user messages)."""
    payloads = st.sampled_from(
        [
            {"type": "text", "text": "hi"},
            {"type": "image", "imageUrl": "https://cdn.example/i.png"},
            {"type": "choice", "text": "pick", "options": [{"label": "a", "value": "a"}]},
            {"type": "card", "title": "t", "actions": []},
        ]
    )
    return st.builds(
        lambda payload, is_bot: {
            "type": "message_created",
            "data": {
                "id": "msg-1",
                "createdAt": "2026-11-22T01:49:25.000Z",
                "conversationId": "conv-1",
                "userId": "user-1",
                "payload": payload,
                "isBot": is_bot,
            },
        },
        payloads,
        st.booleans(),
    )


# ---------------------------------------------------------------- Avro-shaped records

PLAUSIBLE_STRINGS = [
    "acme",
    "globex",
    "platform",
    "EUR",
    "USD",
    "owner",
    "admin",
    "agent",
    "viewer",
    "messenger",
    "bot",
    "public",
    "private",
    "ann@example.com",
    "+33612345678",
    "en",
    "Europe/Paris",
    "messaging.greeting",
    '{"a":1}',
    "1",
    "mon",
    "09:00",
    "billing-provider",
]
IDS = [str(uuid.UUID(int=1)), str(uuid.UUID(int=2)), "acme", "acme/" + str(uuid.UUID(int=1))]


def avro_values(schema: Any, *, strings: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    """Values that fit a parsed (expanded) fastavro schema, drawn from hostile ranges."""
    if isinstance(schema, list):  # union
        return st.one_of(*(avro_values(branch, strings=strings) for branch in schema))
    if isinstance(schema, str):
        return _primitive(schema, strings)
    kind = schema["type"]
    logical = schema.get("logicalType")
    if logical in ("timestamp-millis", "timestamp-micros"):
        return st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)) | st.just(
            datetime(2026, 11, 22, tzinfo=UTC)
        )
    if logical == "date":
        return st.dates()
    if logical == "uuid":
        return st.uuids().map(str)
    if kind == "record":
        return st.fixed_dictionaries({f["name"]: avro_values(f["type"], strings=strings) for f in schema["fields"]})
    if kind == "enum":
        return st.sampled_from(schema["symbols"])
    if kind == "array":
        return st.lists(avro_values(schema["items"], strings=strings), max_size=4)
    if kind == "map":
        return st.dictionaries(strings, avro_values(schema["values"], strings=strings), max_size=4)
    if kind == "fixed":
        return st.binary(min_size=schema["size"], max_size=schema["size"])
    return _primitive(kind, strings)


def _primitive(kind: str, strings: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    return {
        "null": st.none(),
        "boolean": st.booleans(),
        "int": st.sampled_from([0, 1, -1, 2**31 - 1, -(2**31)]) | st.integers(-(2**31), 2**31 - 1),
        "long": st.sampled_from([0, 1, -1, 100, 2**63 - 1, -(2**63)]) | st.integers(-(10**6), 10**6),
        "float": st.floats(width=32, allow_nan=False),
        "double": st.floats(allow_nan=False),
        "bytes": st.binary(max_size=40),
        "string": strings,
    }[kind]


def command_strings() -> st.SearchStrategy[str]:
    """Mostly values a rule might accept (so commands get past the first check), some hostile."""
    return st.one_of(
        st.sampled_from(PLAUSIBLE_STRINGS + IDS),
        st.sampled_from(NASTY_TEXT),
        st.text(max_size=20),
    )


def command_meta(aggregate_ids: list[str]) -> st.SearchStrategy[dict]:
    """Command metadata aimed at a small set of aggregates (`aggregate_ids` most
    often) and tenants, so sequences of commands meet each other's state and
    foreign tenants."""
    return st.fixed_dictionaries(
        {
            "command_id": st.uuids().map(str),
            "aggregate_id": st.sampled_from(aggregate_ids) | st.sampled_from(IDS + ["", " ", "x" * 300])
            if aggregate_ids
            else st.sampled_from(IDS + ["", " ", "x" * 300]),
            "tenant_id": st.sampled_from(["acme", "acme", "acme", "globex", "", "platform"]),
            "correlation_id": st.just("corr-1"),
            "causation_id": st.just("cause-1"),
            "issued_at": st.just(datetime(2026, 11, 22, tzinfo=UTC))
            | st.just(datetime(2026, 11, 22, tzinfo=UTC) + timedelta(days=400)),
            "actor": st.sampled_from(
                ["ann", "ann", "bob", "billing-provider", "billing-provider", "platform", "", str(uuid.UUID(int=1))]
            ),
            "expected_version": st.sampled_from([None] * 8 + [0, 1, 2, -1, 2**63 - 1]),
        }
    )
