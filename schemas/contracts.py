"""Building blocks every hub's pure domain shares: command metadata, the command
base class and the rejection exceptions. No I/O, no framework imports."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, ClassVar

_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


OUTCOME_UNKNOWN = "outcome_unknown"
"""Error code of an outside call that may have been carried out (the request left,
no usable answer came back): retrying it may do the thing twice."""


SEALED_PREFIX = "sealed.v1."
"""Every sealed value starts with this (AES-256-GCM, see infra/sealing.py);
aggregates refuse anything else where a sealed value belongs, so a clear secret
or a bare hash can never be recorded by mistake."""


def spoke_actor(spoke: str) -> str:
    """The actor of what a spoke records and sends (`spoke:botpress`): its
    commands' `meta.actor` and the envelope actor others filter on."""
    return f"spoke:{spoke}"


@dataclass(frozen=True)
class CommandMeta:
    command_id: str
    aggregate_id: str
    tenant_id: str
    correlation_id: str
    causation_id: str
    actor: str
    issued_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    expected_version: int | None = None


@dataclass(frozen=True)
class Command:
    """Base of every command. Subclasses add their payload fields, named as in
    the command's Avro schema (`schemas/<hub>/commands/<Class>.vN.avsc`)."""

    meta: CommandMeta
    hub: ClassVar[str] = ""

    @classmethod
    def avro_name(cls) -> str:
        return f"poseidon.{cls.hub}.commands.{cls.__name__}"

    def payload(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "meta"}


class Rejected(Exception):
    """A command was refused by a business rule. The rule is the class name,
    the message says why in words an operator understands."""

    @property
    def rule(self) -> str:
        return type(self).__name__


class InvalidCommand(Rejected):
    """The command is malformed (bad amount, bad id, unknown currency)."""


class AggregateNotFound(Rejected):
    """The command targets an aggregate that does not exist."""


class AggregateAlreadyExists(Rejected):
    """A creating command targets an id that is already taken."""


class VersionConflict(Rejected):
    """The command's expected version differs from the aggregate's."""


class TenantMismatch(Rejected):
    """The command's tenant does not own the aggregate."""


def snake_case(name: str) -> str:
    return _CAMEL.sub("_", name).lower()
