"""The Entitlement aggregate: what the billing provider says a tenant may use.
Decides (public verbs, small named checks; every command must come from the
billing provider) and evolves (the @event methods only assign state). Pure: no I/O."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime

from eventsourcing.domain import Aggregate, event

from hubs.billing.commands import (
    BILLING_PROVIDER,
    ApplyEntitlement,
    CancelEntitlement,
    ReportUsage,
    entitlement_id,
)
from schemas.contracts import AggregateNotFound, Command, InvalidCommand, Rejected

PLAN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$")
FEATURE = re.compile(r"^[a-z0-9][a-z0-9._:-]{0,63}$")
MAX_FEATURES = 100
MAX_QUOTA = 10**12
MAX_USAGE_REPORT = 10**9
MAX_USAGE = 10**15  # keeps every counter far inside a signed 64-bit long
ACTIVE, CANCELLED = "active", "cancelled"


class NotBillingProvider(Rejected):
    """Only the billing provider may change billing state; nothing inside the platform can."""


class InvalidPeriod(Rejected):
    pass


class StalePeriod(Rejected):
    """Terms for a period older than the one in force (a late or replayed provider message)."""


class UsageForAnotherPeriod(Rejected):
    pass


class EntitlementNotActive(Rejected):
    pass


class Entitlement(Aggregate):
    @staticmethod
    def create_id(entitlement_id: str, **_: object) -> uuid.UUID:
        return uuid.UUID(entitlement_id)

    @event("EntitlementGranted")
    def __init__(
        self,
        entitlement_id: str,
        tenant_id: str,
        plan: str,
        message_quota: int,
        period_start: datetime,
        period_end: datetime,
        features: list[str],
    ):
        self.tenant_id = tenant_id
        self.status = ACTIVE
        self.cancel_reason = ""
        self._set_terms(plan, message_quota, period_start, period_end, features, 0)

    def apply_terms(
        self, plan: str, message_quota: int, period_start: datetime, period_end: datetime, features: list[str]
    ) -> None:
        """Replace the terms. The same terms while active change nothing (a provider's
        retried message); a new period starts with no usage; an older one is refused."""
        check_period_is_not_older(self, period_start)
        if self.status == ACTIVE and (plan, message_quota, period_start, period_end, features) == (
            self.plan,
            self.message_quota,
            self.period_start,
            self.period_end,
            self.features,
        ):
            return
        used = self.used if period_start == self.period_start else 0
        self._entitlement_changed(plan, message_quota, period_start, period_end, features, used)

    def cancel(self, reason: str) -> None:
        check_is_active(self)
        self._entitlement_cancelled(reason)

    def report_usage(self, count: int, period_start: datetime) -> None:
        check_count(count)
        check_period_is_current(self, period_start)
        if self.used + count > MAX_USAGE:
            raise InvalidCommand(f"usage would exceed the maximum of {MAX_USAGE}")
        self._usage_reported(count, period_start, self.used + count)

    def _set_terms(
        self, plan: str, message_quota: int, period_start: datetime, period_end: datetime, features: list[str], used: int
    ) -> None:
        self.plan = plan
        self.message_quota = message_quota
        self.period_start = period_start
        self.period_end = period_end
        self.features = list(features)
        self.used = used

    @event("EntitlementChanged")
    def _entitlement_changed(
        self,
        plan: str,
        message_quota: int,
        period_start: datetime,
        period_end: datetime,
        features: list[str],
        used_in_period: int,
    ) -> None:
        self._set_terms(plan, message_quota, period_start, period_end, features, used_in_period)
        self.status = ACTIVE
        self.cancel_reason = ""

    @event("EntitlementCancelled")
    def _entitlement_cancelled(self, reason: str) -> None:
        self.status = CANCELLED
        self.cancel_reason = reason

    @event("UsageReported")
    def _usage_reported(self, count: int, period_start: datetime, used_after: int) -> None:
        self.used = used_after


# -- named checks -------------------------------------------------------------


def check_is_billing_provider(actor: str) -> None:
    if actor != BILLING_PROVIDER:
        raise NotBillingProvider(
            f"billing state changes only on the billing provider's word; {actor!r} is not {BILLING_PROVIDER!r}"
        )


def check_entitlement_id(aggregate_id: str, tenant_id: str) -> None:
    # One entitlement per tenant, under one spelling: the id is also the Kafka key and table key.
    if not tenant_id:
        raise InvalidCommand("tenant id is required")
    expected = entitlement_id(tenant_id)
    if aggregate_id != expected:
        raise InvalidCommand(f"the entitlement id of tenant {tenant_id!r} is {expected}, not {aggregate_id!r}")


def check_plan(plan: str) -> None:
    if not isinstance(plan, str) or not PLAN.match(plan):
        raise InvalidCommand(f"plan must be 1 to 100 letters, digits or . _ : - (starting with a letter or digit), not {plan!r}")


def check_quota(quota: int) -> None:
    if isinstance(quota, bool) or not isinstance(quota, int) or not 0 <= quota <= MAX_QUOTA:
        raise InvalidCommand(f"message_quota must be an integer from 0 to {MAX_QUOTA}, not {quota!r}")


def check_count(count: int) -> None:
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_USAGE_REPORT:
        raise InvalidCommand(f"count must be an integer from 1 to {MAX_USAGE_REPORT}, not {count!r}")


def check_instant(value: datetime, name: str) -> None:
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise InvalidCommand(f"{name} must be a time with a time zone, not {value!r}")


def check_period(start: datetime, end: datetime) -> None:
    if end <= start:
        raise InvalidPeriod(f"period_end {end.isoformat()} must be after period_start {start.isoformat()}")


def as_stored(instant: datetime) -> datetime:
    """UTC at millisecond precision, as the Avro events carry it, so that state and log agree."""
    instant = instant.astimezone(UTC)
    return instant.replace(microsecond=instant.microsecond // 1000 * 1000)


def canonical_features(features: object) -> list[str]:
    """Sorted and without repeats: the same set of features has one spelling."""
    if isinstance(features, str) or not isinstance(features, list | tuple):
        raise InvalidCommand(f"features must be a list of feature names, not {features!r}")
    wrong = [f for f in features if not isinstance(f, str) or not FEATURE.match(f)]
    if wrong:
        raise InvalidCommand(f"feature names are 1 to 64 lower-case letters, digits or . _ : -; not {wrong[:3]!r}")
    unique = sorted(set(features))
    if len(unique) > MAX_FEATURES:
        raise InvalidCommand(f"at most {MAX_FEATURES} features, not {len(unique)}")
    return unique


def check_period_is_not_older(entitlement: Entitlement, period_start: datetime) -> None:
    if period_start < entitlement.period_start:
        raise StalePeriod(
            f"terms for the period starting {period_start.isoformat()} are older than the period in force "
            f"(starting {entitlement.period_start.isoformat()})"
        )


def check_period_is_current(entitlement: Entitlement, period_start: datetime) -> None:
    if period_start != entitlement.period_start:
        raise UsageForAnotherPeriod(
            f"usage for the period starting {period_start.isoformat()} but the period in force "
            f"starts {entitlement.period_start.isoformat()}"
        )


def check_is_active(entitlement: Entitlement) -> None:
    if entitlement.status != ACTIVE:
        raise EntitlementNotActive(f"the entitlement is {entitlement.status}")


def check_reason(reason: str) -> None:
    if not isinstance(reason, str) or len(reason) > 200:
        raise InvalidCommand("reason must be at most 200 characters")


def handle(entitlement: Entitlement | None, command: Command) -> Entitlement:
    """The one handler of every billing command: returns the entitlement with its
    new pending events, or raises a Rejected subclass before changing anything."""
    meta = command.meta
    # First, before anything about the entitlement is looked at or revealed.
    check_is_billing_provider(meta.actor)
    if isinstance(command, ApplyEntitlement):
        check_plan(command.plan)
        check_quota(command.message_quota)
        check_instant(command.period_start, "period_start")
        check_instant(command.period_end, "period_end")
        start, end = as_stored(command.period_start), as_stored(command.period_end)
        check_period(start, end)
        features = canonical_features(command.features)
        if entitlement is None:
            check_entitlement_id(meta.aggregate_id, meta.tenant_id)
            return Entitlement(
                entitlement_id=meta.aggregate_id,
                tenant_id=meta.tenant_id,
                plan=command.plan,
                message_quota=command.message_quota,
                period_start=start,
                period_end=end,
                features=features,
            )
        entitlement.apply_terms(command.plan, command.message_quota, start, end, features)
        return entitlement
    if entitlement is None:
        raise AggregateNotFound(f"tenant {meta.tenant_id} has no entitlement {meta.aggregate_id}")
    if isinstance(command, CancelEntitlement):
        check_reason(command.reason)
        entitlement.cancel(command.reason)
    elif isinstance(command, ReportUsage):
        check_instant(command.period_start, "period_start")
        entitlement.report_usage(command.count, as_stored(command.period_start))
    else:
        raise InvalidCommand(f"the billing hub has no handler for {type(command).__name__}")
    return entitlement
