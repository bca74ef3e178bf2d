"""Request-field parsing shared by every gRPC service: the required tenant id and
other required strings, UUID fields. Each refusal is InvalidArgument (the status
INVALID_ARGUMENT) and names the field; rules of one domain stay in its service."""

from __future__ import annotations

import uuid

from infra.grpc_server import InvalidArgument


def required(value: str, field: str) -> str:
    """`value`, or INVALID_ARGUMENT "<field> is required" when it is empty."""
    if not value:
        raise InvalidArgument(f"{field} is required")
    return value


def tenant(value: str) -> str:
    """The request's tenant id, which every tenant-scoped call must name."""
    return required(value, "tenant_id")


def uuid_of(value: str, field: str, shown: int | None = None) -> uuid.UUID:
    """`value` as a UUID (any spelling uuid.UUID accepts). The refusal repeats
    the value, cut to its first `shown` characters when given."""
    try:
        return uuid.UUID(value)
    except ValueError:
        echoed = value if shown is None else value[:shown]
        raise InvalidArgument(f"{field} must be a UUID, not {echoed!r}") from None


def is_canonical_uuid(value: object) -> bool:
    """Whether `value` is a UUID in its canonical lower-case hyphenated spelling."""
    try:
        return str(uuid.UUID(value)) == value  # type: ignore[arg-type]
    except (ValueError, TypeError, AttributeError):
        return False


def canonical_uuid(value: str, field: str) -> str:
    """`value` itself, refused unless it is a canonical (lower-case, hyphenated) UUID:
    for ids that are compared and stored as strings."""
    if not is_canonical_uuid(value):
        raise InvalidArgument(f"{field} must be a lower-case UUID, not {value!r}")
    return value
