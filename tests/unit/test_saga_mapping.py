"""The saga read model's pure mapping, fed the records the projector receives:
events the Saga aggregate really emitted, in the processor's envelope, through
the real Avro codec."""

from __future__ import annotations

import uuid

import pytest

from infra.hub import event_payload
from projections.saga.mapping import START, TIMELINE_ROW, UPDATE, apply, searchable_ids
from schemas.codec import Catalog, Codec
from tests.unit.test_saga_aggregate import Story

CODEC = Codec(Catalog.load())


def records(story: Story, decisions) -> list[tuple[str, dict]]:
    out = []
    for decision in decisions:
        for event in decision.events:
            name = f"poseidon.saga.{type(event).__name__}"
            fields = [f["name"] for f in CODEC.catalog.latest(name).parsed["fields"] if f["name"] != "envelope"]
            envelope = {
                "event_id": str(uuid.uuid4()),
                "event_type": name,
                "aggregate_id": story.saga_id,
                "aggregate_version": event.originator_version,
                "tenant_id": "acme",
                "correlation_id": "corr-1",
                "causation_id": "c",
                "occurred_at": event.timestamp,
                "actor": "saga-driver",
                "previous_hash": "",
            }
            decoded = CODEC.decode(CODEC.encode(name, {"envelope": envelope, **event_payload(event, fields)}))
            out.append((decoded.name, decoded.record))
    return out


def compensation_story() -> tuple[Story, list]:
    from hubs.saga.commands import AbortSaga, RetryStep

    s = Story()
    ds = [s.start()]
    while s.pending()[1] != "default_config":
        ds.append(s.answer())
    ds += s.fail_attempts(3)  # → compensation of open_wallet
    ds += s.fail_attempts(3)  # → needs attention
    ds.append(s.run(RetryStep(s.meta(), step="open_wallet", operator="op", reason="fixed")))
    ds.append(s.answer())  # open_wallet compensated
    ds.append(s.answer())  # create_tenant compensated → SagaAborted(compensated)
    other = Story()
    other.start()
    ds_other = [other.run(AbortSaga(other.meta(), operator="op", reason="test"))]
    happy = Story()
    hs = [happy.start()]
    while happy.saga.status != "completed":
        hs.append(happy.answer())
    return s, records(s, ds) + records(other, ds_other) + records(happy, hs)


def test_every_saga_event_schema_is_emitted_encodes_and_has_a_mapping():
    _, recs = compensation_story()
    names = {n for n in CODEC.catalog.names() if n.startswith("poseidon.saga.") and ".commands." not in n}
    assert {name for name, _ in recs} == names
    for name, record in recs:
        assert apply(name, record)


def test_a_started_saga_gets_its_row_and_every_event_a_timeline_row_and_a_guarded_update():
    s, recs = compensation_story()
    first = apply(*recs[0])
    assert [st.sql for st in first] == [START, TIMELINE_ROW, UPDATE]
    assert first[0].args[2] == "tenant_onboarding" and first[0].args[3] == "corr-1"
    requested = apply(*recs[1])
    update = requested[-1].args
    assert update[2:6] == ("waiting", "create_tenant", None, True) and update[6] == 1 and update[7] is not None


def test_an_exhausted_compensation_shows_needs_attention_with_its_error_and_no_deadline():
    _, recs = compensation_story()
    failed = [r for n, r in recs if n.endswith("CompensationFailed") and not r["will_retry"]][0]
    update = apply("poseidon.saga.CompensationFailed", failed)[-1].args
    assert update[2] == "needs_attention" and "open_wallet (compensation)" in update[4]
    assert update[5] is True and update[7] is None


def test_operator_actions_appear_in_the_timeline_with_who_and_why_and_keep_the_pending_request():
    _, recs = compensation_story()
    acted = [r for n, r in recs if n.endswith("OperatorActed")][0]
    statements = apply("poseidon.saga.OperatorActed", acted)
    timeline = statements[0].args
    assert timeline[3] == "OperatorActed" and "op chose retry: fixed" == timeline[5]
    assert statements[-1].args[2:6] == (None, None, None, False)


def test_the_end_states_are_compensated_aborted_and_completed():
    _, recs = compensation_story()
    ends = [apply(n, r)[-1].args[2] for n, r in recs if n.endswith(("SagaAborted", "SagaCompleted"))]
    assert sorted(ends) == ["aborted", "compensated", "completed"]


def test_a_started_saga_row_carries_its_inputs_message_and_contact_ids_for_the_dashboard_to_find_it_by():
    _, recs = compensation_story()
    started = dict(recs[0][1])
    started["input_json"] = '{"message_id": "m-1", "contact_id": "psid-9", "text": "hello"}'
    row = apply("poseidon.saga.SagaStarted", started)[0]
    assert row.args[7:9] == ("m-1", "psid-9")
    assert "message_id, contact_id" in row.sql


def test_a_started_saga_row_keeps_the_trace_it_started_in_and_an_older_start_has_none():
    _, recs = compensation_story()
    traced = {**recs[0][1], "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"}
    assert apply("poseidon.saga.SagaStarted", traced)[0].args[9] == "4bf92f3577b34da6a3ce929d0e0e4736"
    v1 = {k: v for k, v in recs[0][1].items() if k != "trace_id"}
    assert apply("poseidon.saga.SagaStarted", v1)[0].args[9] == ""


@pytest.mark.parametrize(
    "input_json, ids",
    [
        ("{}", ("", "")),
        ('{"message_id": 7, "contact_id": ["x"]}', ("", "")),
        ('{"message_id": "' + "m" * 201 + '", "contact_id": "c"}', ("", "c")),
        ("not json", ("", "")),
        ('["message_id"]', ("", "")),
    ],
)
def test_an_input_without_string_ids_leaves_the_searchable_columns_empty(input_json, ids):
    assert searchable_ids(input_json) == ids
