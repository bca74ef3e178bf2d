"""The billing entitlement's rules as given (prior events) / when (a command
through `infra.hub.decide`, the same pure step the aggregate processor runs) / then: only the billing provider may
change billing state, terms and periods are checked, usage adds up per period.
No broker, no database."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from hubs.billing.aggregate import MAX_QUOTA, MAX_USAGE_REPORT, Entitlement
from hubs.billing.commands import (
    BILLING_PROVIDER,
    ENTITLEMENT_NAMESPACE,
    ApplyEntitlement,
    CancelEntitlement,
    ReportUsage,
    entitlement_id,
)
from hubs.billing.hub import HUB
from infra.hub import SnapshotCodec
from schemas.contracts import CommandMeta, InvalidCommand
from tests.unit.given_when_then import Fact, Hub, given, happened, only_event, then_rejected

TENANT = "tenant-a"
OTHER_TENANT = "tenant-b"
JAN = datetime(2026, 1, 1, tzinfo=UTC)
FEB = datetime(2026, 2, 1, tzinfo=UTC)
MAR = datetime(2026, 3, 1, tzinfo=UTC)


def meta(aggregate_id: str, *, tenant: str = TENANT, actor: str = BILLING_PROVIDER) -> CommandMeta:
    command_id = str(uuid.uuid4())
    return CommandMeta(
        command_id=command_id,
        aggregate_id=aggregate_id,
        tenant_id=tenant,
        correlation_id=command_id,
        causation_id=command_id,
        actor=actor,
    )


class Provider:
    """Builds the billing provider's commands for one tenant's entitlement."""

    def __init__(self, tenant: str = TENANT, aggregate_id: str | None = None):
        self.tenant = tenant
        self.aggregate_id = entitlement_id(tenant) if aggregate_id is None else aggregate_id

    def apply(self, plan="pro", quota=1000, start=JAN, end=FEB, features=("webhooks", "botpress"), **m) -> ApplyEntitlement:
        return ApplyEntitlement(
            meta(self.aggregate_id, tenant=m.pop("tenant", self.tenant), **m),
            plan=plan,
            message_quota=quota,
            period_start=start,
            period_end=end,
            features=features,
        )

    def cancel(self, reason="subscription_canceled", **m) -> CancelEntitlement:
        return CancelEntitlement(meta(self.aggregate_id, tenant=m.pop("tenant", self.tenant), **m), reason=reason)

    def usage(self, count, start=JAN, **m) -> ReportUsage:
        return ReportUsage(meta(self.aggregate_id, tenant=m.pop("tenant", self.tenant), **m), count=count, period_start=start)

    # -- what happened to the entitlement, for `given` (features in their canonical, sorted spelling) --

    def granted(self, plan="pro", quota=1000, start=JAN, end=FEB, features=("botpress", "webhooks")) -> Fact:
        return happened(
            Entitlement.EntitlementGranted,
            entitlement_id=self.aggregate_id,
            tenant_id=self.tenant,
            plan=plan,
            message_quota=quota,
            period_start=start,
            period_end=end,
            features=list(features),
        )

    def changed(self, plan="pro", quota=1000, start=JAN, end=FEB, features=("botpress", "webhooks"), used=0) -> Fact:
        return happened(
            Entitlement.EntitlementChanged,
            plan=plan,
            message_quota=quota,
            period_start=start,
            period_end=end,
            features=list(features),
            used_in_period=used,
        )

    def cancelled(self, reason="subscription_canceled") -> Fact:
        return happened(Entitlement.EntitlementCancelled, reason=reason)

    def usage_reported(self, count: int, used_after: int, start=JAN) -> Fact:
        return happened(Entitlement.UsageReported, count=count, period_start=start, used_after=used_after)


when = Hub(HUB).when


def terms(e: Entitlement) -> tuple:
    return (e.plan, e.message_quota, e.period_start, e.period_end, e.features, e.status, e.used, e.version)


# -- the id -----------------------------------------------------------------------


def test_the_entitlement_id_is_uuid5_of_the_tenant_id_in_the_billing_namespace_spelled_canonically():
    assert ENTITLEMENT_NAMESPACE == uuid.uuid5(uuid.NAMESPACE_URL, "urn:poseidon:billing:entitlement")
    assert entitlement_id(TENANT) == str(uuid.uuid5(ENTITLEMENT_NAMESPACE, TENANT))
    assert entitlement_id(TENANT) == str(uuid.UUID(entitlement_id(TENANT)))
    assert entitlement_id(TENANT) != entitlement_id(OTHER_TENANT)


@pytest.mark.parametrize(
    "aggregate_id",
    [entitlement_id(OTHER_TENANT), entitlement_id(TENANT).upper(), str(uuid.uuid4()), "not-a-uuid", ""],
)
def test_granting_under_any_id_but_the_tenants_own_entitlement_id_is_invalid(aggregate_id):
    decision = when(None, Provider(aggregate_id=aggregate_id).apply())

    then_rejected(decision, "InvalidCommand")
    assert entitlement_id(TENANT) in str(decision.rejection)
    assert decision.aggregate is None


# -- only the billing provider ----------------------------------------------------------


@pytest.mark.parametrize("actor", ["operator-cli", "system", "message-router", "Billing-Provider", "billing-provider ", ""])
def test_applying_terms_from_anyone_but_the_billing_provider_is_refused(actor):
    decision = when(None, Provider().apply(actor=actor))

    then_rejected(decision, "NotBillingProvider")
    assert decision.aggregate is None


def test_a_non_provider_cannot_change_cancel_or_report_usage_on_an_existing_entitlement():
    p = Provider()
    entitlement = given(p.granted())
    before = terms(entitlement)

    for command in (p.apply(plan="free", quota=0, actor="admin"), p.cancel(actor="admin"), p.usage(5, actor="admin")):
        then_rejected(when(entitlement, command), "NotBillingProvider")

    assert terms(entitlement) == before


def test_the_provider_rule_is_checked_before_the_entitlement_is_looked_at():
    # A non-provider learns nothing, not even whether the tenant has an entitlement.
    then_rejected(when(None, Provider().cancel(actor="admin")), "NotBillingProvider")
    then_rejected(when(None, Provider().usage(1, actor="admin")), "NotBillingProvider")


# -- granting ------------------------------------------------------------------------


def test_the_first_terms_grant_the_entitlement_with_sorted_unique_features_and_no_usage():
    p = Provider()

    decision = when(None, p.apply(plan="pro", quota=5000, features=["webhooks", "botpress", "webhooks"]))

    event = only_event(decision)
    assert type(event).__name__ == "EntitlementGranted"
    assert HUB.event_name(event) == "poseidon.billing.EntitlementGranted"
    assert (event.plan, event.message_quota, event.period_start, event.period_end) == ("pro", 5000, JAN, FEB)
    assert event.features == ["botpress", "webhooks"]
    assert event.tenant_id == TENANT
    assert event.originator_id == uuid.UUID(p.aggregate_id)
    assert terms(decision.aggregate) == ("pro", 5000, JAN, FEB, ["botpress", "webhooks"], "active", 0, 1)


def test_a_plan_without_features_and_with_zero_quota_is_a_valid_grant():
    event = only_event(when(None, Provider().apply(plan="free", quota=0, features=())))

    assert (event.plan, event.message_quota, event.features) == ("free", 0, [])


@pytest.mark.parametrize("plan", ["", " pro", "-pro", "p" * 101, "pro plan", "pro/1", None, 7])
def test_a_plan_that_is_not_a_provider_plan_identifier_is_invalid(plan):
    then_rejected(when(None, Provider().apply(plan=plan)), "InvalidCommand")


@pytest.mark.parametrize("quota", [-1, MAX_QUOTA + 1, 1.5, "100", None, True])
def test_a_message_quota_that_is_not_an_integer_from_zero_to_the_maximum_is_invalid(quota):
    then_rejected(when(None, Provider().apply(quota=quota)), "InvalidCommand")


def test_the_maximum_message_quota_is_accepted():
    assert only_event(when(None, Provider().apply(quota=MAX_QUOTA))).message_quota == MAX_QUOTA


@pytest.mark.parametrize(
    "features", [["Webhooks"], ["web hooks"], [""], ["x" * 65], [7], {"webhooks": True}, None, [f"f{i}" for i in range(101)]]
)
def test_features_that_are_not_a_list_of_lower_case_feature_names_are_invalid(features):
    then_rejected(when(None, Provider().apply(features=features)), "InvalidCommand")


# -- periods ---------------------------------------------------------------------------


@pytest.mark.parametrize("end", [JAN, JAN - timedelta(days=1), JAN + timedelta(microseconds=500)])
def test_a_period_that_does_not_end_after_it_starts_is_invalid(end):
    decision = when(None, Provider().apply(start=JAN, end=end))

    then_rejected(decision, "InvalidPeriod")
    assert "period_end" in str(decision.rejection)


def test_a_period_without_a_time_zone_is_invalid():
    then_rejected(when(None, Provider().apply(start=datetime(2026, 1, 1), end=FEB)), "InvalidCommand")


def test_periods_are_kept_in_utc_at_the_millisecond_precision_of_the_events():
    paris = timezone(timedelta(hours=1))
    start = datetime(2026, 1, 1, 1, 0, 0, 123456, tzinfo=paris)

    event = only_event(when(None, Provider().apply(start=start, end=FEB)))

    assert event.period_start == datetime(2026, 1, 1, 0, 0, 0, 123000, tzinfo=UTC)
    assert event.period_start.utcoffset() == timedelta(0)


def test_renewing_into_a_new_period_records_the_new_terms_and_starts_usage_from_zero():
    p = Provider()
    entitlement = given(p.granted(start=JAN, end=FEB), p.usage_reported(300, used_after=300))

    event = only_event(when(entitlement, p.apply(start=FEB, end=MAR)))

    assert type(event).__name__ == "EntitlementChanged"
    assert (event.period_start, event.period_end, event.used_in_period) == (FEB, MAR, 0)
    assert (entitlement.used, entitlement.version) == (0, 3)


def test_changing_the_plan_within_the_period_keeps_the_usage_of_the_period():
    p = Provider()
    entitlement = given(p.granted(plan="pro", quota=1000), p.usage_reported(300, used_after=300))

    event = only_event(when(entitlement, p.apply(plan="business", quota=5000, features=["sso"])))

    assert (event.plan, event.message_quota, event.features, event.used_in_period) == ("business", 5000, ["sso"], 300)
    assert terms(entitlement) == ("business", 5000, JAN, FEB, ["sso"], "active", 300, 3)


def test_terms_for_a_period_older_than_the_one_in_force_are_refused_as_stale():
    p = Provider()
    entitlement = given(p.granted(start=FEB, end=MAR))
    before = terms(entitlement)

    decision = when(entitlement, p.apply(start=JAN, end=FEB))

    then_rejected(decision, "StalePeriod")
    assert terms(entitlement) == before


def test_the_same_terms_again_change_nothing_and_are_accepted():
    # A provider's redelivered message under a new id: no event, no new version.
    p = Provider()
    entitlement = given(p.granted(features=["a", "b"]))

    decision = when(entitlement, p.apply(features=["a", "b", "a"]))

    assert decision.accepted and decision.events == [] and decision.version == 1


# -- cancelling ----------------------------------------------------------------------


def test_cancelling_records_entitlement_cancelled_with_the_providers_reason():
    p = Provider()
    entitlement = given(p.granted())

    event = only_event(when(entitlement, p.cancel("payment_failed")))

    assert type(event).__name__ == "EntitlementCancelled"
    assert event.reason == "payment_failed"
    assert (entitlement.status, entitlement.cancel_reason) == ("cancelled", "payment_failed")


def test_cancelling_an_entitlement_that_is_already_cancelled_is_refused():
    p = Provider()
    entitlement = given(p.granted(), p.cancelled())

    then_rejected(when(entitlement, p.cancel()), "EntitlementNotActive")


def test_cancelling_an_entitlement_that_was_never_granted_is_refused_as_not_found():
    then_rejected(when(None, Provider().cancel()), "AggregateNotFound")


def test_a_reason_longer_than_200_characters_is_invalid():
    entitlement = given(Provider().granted())

    then_rejected(when(entitlement, Provider().cancel("x" * 201)), "InvalidCommand")


def test_the_same_terms_after_a_cancellation_reactivate_the_entitlement():
    p = Provider()
    entitlement = given(p.granted(), p.usage_reported(10, used_after=10), p.cancelled())

    event = only_event(when(entitlement, p.apply()))

    assert type(event).__name__ == "EntitlementChanged" and event.used_in_period == 10
    assert (entitlement.status, entitlement.cancel_reason) == ("active", "")


# -- usage ---------------------------------------------------------------------------


def test_reported_usage_adds_up_within_the_period():
    p = Provider()
    entitlement = given(p.granted(), p.usage_reported(120, used_after=120))

    event = only_event(when(entitlement, p.usage(80)))

    assert type(event).__name__ == "UsageReported"
    assert (event.count, event.period_start, event.used_after) == (80, JAN, 200)
    assert entitlement.used == 200


def test_usage_beyond_the_quota_is_recorded_because_it_is_a_fact_reported_by_the_provider():
    p = Provider()
    entitlement = given(p.granted(quota=100), p.usage_reported(100, used_after=100))

    assert only_event(when(entitlement, p.usage(1))).used_after == 101


def test_usage_for_another_period_than_the_one_in_force_is_refused():
    p = Provider()
    entitlement = given(p.granted(start=JAN, end=FEB), p.usage_reported(5, used_after=5), p.changed(start=FEB, end=MAR, used=0))

    for start in (JAN, MAR):
        then_rejected(when(entitlement, p.usage(5, start=start)), "UsageForAnotherPeriod")
    assert entitlement.used == 0


def test_usage_reported_late_for_a_cancelled_entitlements_period_is_still_recorded():
    p = Provider()
    entitlement = given(p.granted(), p.cancelled())

    assert only_event(when(entitlement, p.usage(7))).used_after == 7


@pytest.mark.parametrize("count", [0, -3, MAX_USAGE_REPORT + 1, 2.0, "5", None, True])
def test_a_usage_count_that_is_not_a_positive_integer_up_to_the_maximum_is_invalid(count):
    entitlement = given(Provider().granted())

    then_rejected(when(entitlement, Provider().usage(count)), "InvalidCommand")
    assert entitlement.used == 0


def test_usage_for_an_entitlement_that_was_never_granted_is_refused_as_not_found():
    then_rejected(when(None, Provider().usage(1)), "AggregateNotFound")


# -- shared rules ----------------------------------------------------------------------


def test_another_tenant_cannot_command_this_tenants_entitlement_even_as_the_provider():
    p = Provider()
    entitlement = given(p.granted())

    for command in (p.apply(tenant=OTHER_TENANT), p.cancel(tenant=OTHER_TENANT), p.usage(1, tenant=OTHER_TENANT)):
        then_rejected(when(entitlement, command), "TenantMismatch")
    assert entitlement.status == "active" and entitlement.used == 0


def test_the_entitlement_survives_the_processors_snapshot_unchanged():
    p = Provider()
    entitlement = given(p.granted(), p.usage_reported(42, used_after=42), p.cancelled("payment_failed"))
    codec = SnapshotCodec()

    restored, last_hash = codec.loads(codec.dumps(entitlement, "abc"))

    assert terms(restored) == terms(entitlement) and last_hash == "abc"
    assert restored.cancel_reason == "payment_failed" and restored.tenant_id == TENANT
    assert only_event(when(restored, p.apply())).used_in_period == 42


# -- the commands as the command line builds them ---------------------------------------


def test_the_command_line_text_for_features_and_periods_becomes_a_tuple_and_utc_times():
    command = ApplyEntitlement(
        meta(entitlement_id(TENANT)),
        plan="pro",
        message_quota=10,
        period_start="2026-01-01",
        period_end="2026-02-01T00:00:00+01:00",
        features=" webhooks, botpress,,",
    )

    assert command.features == ("webhooks", "botpress")
    assert command.period_start == JAN
    assert command.period_end == datetime(2026, 1, 31, 23, tzinfo=UTC)
    assert ReportUsage(meta(entitlement_id(TENANT)), count=1, period_start="2026-01-01T00:00:00Z").period_start == JAN


def test_period_text_that_is_not_iso_8601_is_an_invalid_command_naming_the_field():
    with pytest.raises(InvalidCommand, match="period_end"):
        ApplyEntitlement(
            meta(entitlement_id(TENANT)), plan="p", message_quota=1, period_start=JAN, period_end="next month", features=()
        )
