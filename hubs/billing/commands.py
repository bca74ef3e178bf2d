"""Billing commands. Only the billing provider sends them (meta.actor must be
BILLING_PROVIDER); nothing inside the platform changes billing state. The one
entitlement of a tenant has the id `entitlement_id(tenant_id)`."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ClassVar

from schemas.contracts import Command, InvalidCommand

BILLING_PROVIDER = "billing-provider"
"""The only actor billing commands are accepted from."""

ENTITLEMENT_NAMESPACE = uuid.UUID("883e7a9b-44da-5d21-afd7-ba7498ecedf8")
"""uuid5(NAMESPACE_URL, "urn:poseidon:billing:entitlement"). Never change it:
every entitlement id (Kafka key, table key) derives from it."""


def entitlement_id(tenant_id: str) -> str:
    """The id of a tenant's entitlement: uuid5 over the tenant id, canonical spelling."""
    return str(uuid.uuid5(ENTITLEMENT_NAMESPACE, tenant_id))


@dataclass(frozen=True)
class BillingCommand(Command):
    hub: ClassVar[str] = "billing"


@dataclass(frozen=True)
class ApplyEntitlement(BillingCommand):
    """The provider's current terms for the tenant: grants the first time,
    replaces the terms afterwards (plan change, renewal, reactivation)."""

    plan: str
    message_quota: int
    period_start: datetime
    period_end: datetime
    features: tuple[str, ...]

    def __post_init__(self) -> None:
        # The generic command-line verbs hand every option over as text.
        if isinstance(self.features, str):
            object.__setattr__(self, "features", tuple(f.strip() for f in self.features.split(",") if f.strip()))
        elif isinstance(self.features, list):
            object.__setattr__(self, "features", tuple(self.features))
        object.__setattr__(self, "period_start", _instant(self.period_start, "period_start"))
        object.__setattr__(self, "period_end", _instant(self.period_end, "period_end"))


@dataclass(frozen=True)
class CancelEntitlement(BillingCommand):
    reason: str = ""


@dataclass(frozen=True)
class ReportUsage(BillingCommand):
    """`count` more messages metered by the provider in the period starting at `period_start`."""

    count: int
    period_start: datetime

    def __post_init__(self) -> None:
        object.__setattr__(self, "period_start", _instant(self.period_start, "period_start"))


def _instant(value: object, name: str) -> object:
    """ISO-8601 text (naive means UTC) to an aware datetime; anything else is left
    for the aggregate's checks to judge."""
    if not isinstance(value, str):
        return value
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidCommand(f"{name} must be an ISO-8601 date or time, not {value!r}") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


COMMANDS = (ApplyEntitlement, CancelEntitlement, ReportUsage)
