"""The billing read model's pure event → statements mapping, fed the events the
aggregate really emitted, wrapped in the processor's envelope and passed through
the real Avro codec. A small model of the two statements (insert-or-replace under
a version guard, partial update under a version guard) run in the projector's
phase order checks that any batching of any history ends at the aggregate's state."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from hypothesis import given as for_all
from hypothesis import settings
from hypothesis import strategies as st

from hubs.billing.commands import BILLING_PROVIDER, ApplyEntitlement, CancelEntitlement, ReportUsage, entitlement_id
from hubs.billing.hub import HUB
from infra.hub import decide, event_payload
from infra.projection import Statement
from projections.billing import PROJECTION
from projections.billing.mapping import TERMS, TERMS_SQL, UPDATE_SQL, UPDATES, apply
from schemas.codec import Catalog, Codec
from schemas.contracts import CommandMeta

CODEC = Codec(Catalog.load())
TENANT = "tenant-a"
EVENT_FIELDS = {
    name: [f["name"] for f in CODEC.catalog.latest(name).parsed["fields"] if f["name"] != "envelope"]
    for name in CODEC.catalog.names()
    if name.startswith("poseidon.billing.") and ".commands." not in name
}
PERIODS = [datetime(2026, month, 1, tzinfo=UTC) for month in range(1, 6)]


class Story:
    """Runs provider commands against one entitlement and keeps the event records
    the processor would have published, in order."""

    def __init__(self):
        self.aggregate_id = entitlement_id(TENANT)
        self.entitlement = None
        self.records: list[tuple[str, dict]] = []

    def do(self, cls, **payload) -> list[tuple[str, dict]]:
        command_id = str(uuid.uuid4())
        meta = CommandMeta(command_id, self.aggregate_id, TENANT, f"corr-{command_id}", command_id, BILLING_PROVIDER)
        decision = decide(HUB, self.entitlement, cls(meta, **payload))
        if not decision.accepted:
            return []
        self.entitlement = decision.aggregate
        new = []
        for domain_event in decision.events:
            name = HUB.event_name(domain_event)
            record = {
                "envelope": {
                    "event_id": str(uuid.uuid4()),
                    "event_type": name,
                    "aggregate_id": self.aggregate_id,
                    "aggregate_version": domain_event.originator_version,
                    "tenant_id": TENANT,
                    "correlation_id": meta.correlation_id,
                    "causation_id": command_id,
                    "occurred_at": domain_event.timestamp,
                    "actor": BILLING_PROVIDER,
                    "previous_hash": "",
                },
                **event_payload(domain_event, EVENT_FIELDS[name]),
            }
            decoded = CODEC.decode(CODEC.encode(name, record))
            new.append((decoded.name, decoded.record))
        self.records.extend(new)
        return new

    def only(self, cls, **payload) -> tuple[str, dict]:
        new = self.do(cls, **payload)
        assert len(new) == 1, f"{cls.__name__} was refused or emitted {len(new)} events"
        return new[0]

    def apply(self, plan="pro", quota=1000, start=PERIODS[0], end=PERIODS[1], features=("webhooks",)):
        return self.do(ApplyEntitlement, plan=plan, message_quota=quota, period_start=start, period_end=end, features=features)


# -- one event at a time --------------------------------------------------------------


def test_entitlement_granted_writes_the_whole_row_with_no_usage():
    story = Story()
    event_type, record = story.only(
        ApplyEntitlement, plan="pro", message_quota=500, period_start=PERIODS[0], period_end=PERIODS[1], features=["b", "a"]
    )

    [statement] = apply(event_type, record)

    at = record["envelope"]["occurred_at"]
    assert statement == Statement(
        TERMS_SQL,
        (TENANT, uuid.UUID(story.aggregate_id), "pro", 500, PERIODS[0], PERIODS[1], ["a", "b"], 0, 1, at),
        phase=TERMS,
    )


def test_entitlement_changed_writes_the_whole_row_carrying_the_usage_of_the_period():
    story = Story()
    story.apply()
    story.only(ReportUsage, count=30, period_start=PERIODS[0])
    event_type, record = story.only(
        ApplyEntitlement, plan="business", message_quota=9000, period_start=PERIODS[0], period_end=PERIODS[2], features=[]
    )

    [statement] = apply(event_type, record)

    at = record["envelope"]["occurred_at"]
    assert statement == Statement(
        TERMS_SQL,
        (TENANT, uuid.UUID(story.aggregate_id), "business", 9000, PERIODS[0], PERIODS[2], [], 30, 3, at),
        phase=TERMS,
    )


def test_entitlement_cancelled_sets_status_and_reason_only():
    story = Story()
    story.apply()
    event_type, record = story.only(CancelEntitlement, reason="payment_failed")

    assert apply(event_type, record) == [
        Statement(UPDATE_SQL, (TENANT, "cancelled", "payment_failed", None, 2, record["envelope"]["occurred_at"]), phase=UPDATES)
    ]


def test_usage_reported_sets_the_usage_after_it_only():
    story = Story()
    story.apply()
    story.only(ReportUsage, count=5, period_start=PERIODS[0])
    event_type, record = story.only(ReportUsage, count=7, period_start=PERIODS[0])

    assert apply(event_type, record) == [
        Statement(UPDATE_SQL, (TENANT, None, None, 12, 3, record["envelope"]["occurred_at"]), phase=UPDATES)
    ]


def test_the_mapping_handles_the_full_avro_name_and_the_bare_event_name_alike():
    story = Story()
    event_type, record = story.apply()[0]

    assert event_type == "poseidon.billing.EntitlementGranted"
    assert apply("EntitlementGranted", record) == apply(event_type, record)


@pytest.mark.parametrize("event_type", ["poseidon.billing.InvoiceIssued", "poseidon.wallet.FundsCredited", ""])
def test_an_event_type_the_read_model_does_not_know_raises_value_error_naming_it(event_type):
    _, record = Story().apply()[0]

    with pytest.raises(ValueError, match="no mapping"):
        apply(event_type, record)


def test_the_read_model_reads_the_billing_events_topic_and_compares_its_one_table():
    assert (PROJECTION.name, tuple(PROJECTION.topics), tuple(PROJECTION.tables)) == (
        "billing",
        ("billing.events",),
        ("entitlements",),
    )


# -- any history, any batching ---------------------------------------------------------


def run(statements: list[Statement], rows: dict[str, dict]) -> None:
    """What PostgreSQL does with the two statements, in the projector's order
    (by phase, stable within a phase)."""
    for s in sorted(statements, key=lambda s: s.phase):
        if s.sql == TERMS_SQL:
            tenant, eid, plan, quota, start, end, features, used, version, at = s.args
            row = rows.get(tenant)
            if row is None or row["version"] < version:
                rows[tenant] = {
                    "entitlement_id": eid, "plan": plan, "message_quota": quota, "period_start": start, "period_end": end,
                    "features": features, "status": "active", "cancel_reason": "", "reported_used": used, "version": version,
                    "granted_at": row["granted_at"] if row else at, "updated_at": at,
                }  # fmt: skip
        elif s.sql == UPDATE_SQL:
            tenant, status, reason, used, version, at = s.args
            row = rows.get(tenant)
            if row is not None and row["version"] < version:
                row["status"] = status if status is not None else row["status"]
                row["cancel_reason"] = reason if reason is not None else row["cancel_reason"]
                row["reported_used"] = used if used is not None else row["reported_used"]
                row.update(version=version, updated_at=at)
        else:
            raise AssertionError(f"unexpected statement {s.sql}")


def state_of(entitlement) -> dict:
    return {
        "plan": entitlement.plan,
        "message_quota": entitlement.message_quota,
        "period_start": entitlement.period_start,
        "period_end": entitlement.period_end,
        "features": entitlement.features,
        "status": entitlement.status,
        "cancel_reason": entitlement.cancel_reason,
        "reported_used": entitlement.used,
        "version": entitlement.version,
    }


steps = st.lists(
    st.one_of(
        st.tuples(st.just("apply"), st.sampled_from(["free", "pro", "business"]), st.integers(0, 3), st.integers(0, 2000)),
        st.tuples(st.just("cancel"), st.sampled_from(["", "payment_failed"])),
        st.tuples(st.just("usage"), st.integers(1, 500), st.integers(0, 3)),
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=150, deadline=None)
@for_all(steps=steps, cuts=st.lists(st.integers(1, 25), max_size=6), replayed=st.booleans())
def test_any_history_projected_in_any_batches_ends_at_the_aggregates_state(steps, cuts, replayed):
    story = Story()
    story.apply()
    for step in steps:
        if step[0] == "apply":
            _, plan, period, quota = step
            story.apply(plan=plan, quota=quota, start=PERIODS[period], end=PERIODS[period + 1], features=[plan])
        elif step[0] == "cancel":
            story.do(CancelEntitlement, reason=step[1])
        else:
            story.do(ReportUsage, count=step[1], period_start=PERIODS[step[2]])
    statements = [apply(t, r) for t, r in story.records]
    bounds = sorted({0, len(statements), *(c for c in cuts if c < len(statements))})

    rows: dict[str, dict] = {}
    for lo, hi in zip(bounds, bounds[1:], strict=False):
        run([s for per_event in statements[lo:hi] for s in per_event], rows)
    if replayed:  # a redelivered tail changes nothing
        run([s for per_event in statements[len(statements) // 2 :] for s in per_event], rows)

    row = rows[TENANT]
    assert {k: row[k] for k in state_of(story.entitlement)} == state_of(story.entitlement)
    assert row["entitlement_id"] == uuid.UUID(story.aggregate_id)
