"""The config entry aggregate — one key in one scope — and the rules for scopes,
keys and values: decides (public verbs, small named checks) and evolves (the
@event methods only assign state). Pure: no I/O."""

from __future__ import annotations

import json
import math
import re
import uuid

from eventsourcing.domain import Aggregate, event

from hubs.config.commands import SetConfigValue, UnsetConfigValue
from schemas.contracts import Command, InvalidCommand, Rejected, TenantMismatch

GLOBAL, ENVIRONMENT, TENANT = "global", "environment", "tenant"
SCOPE_KINDS = (GLOBAL, ENVIRONMENT, TENANT)
"""Weakest first: a tenant value overrides an environment value, which overrides a global one."""

PLATFORM_TENANT = "platform"
"""The tenant id that owns global and environment entries (and stamps their events).
No tenant-scope entry may use it, so no tenant's data ever lives under it."""

ENTRY_NAMESPACE = uuid.UUID("a47e6081-95c7-5202-a46a-abad6e012901")
"""Namespace of entry ids: entry id = uuid5(ENTRY_NAMESPACE, "<scope_kind>/<scope_id>/<key>").
Fixed forever: entry ids are Kafka keys and table keys of events already written."""

MAX_KEY_LENGTH = 200
MAX_VALUE_BYTES = 64 * 1024
MAX_VALUE_DEPTH = 32
MAX_SCOPE_ID_LENGTH = 200

_KEY = re.compile(r"[a-z][a-z0-9_-]*(?:\.[a-z][a-z0-9_-]*)*")
_ENVIRONMENT = re.compile(r"[a-z][a-z0-9-]{0,62}")
_TENANT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]*")


class ConfigValueNotSet(Rejected):
    """Unset of a key that has no value in that scope."""


class ConfigEntry(Aggregate):
    # Every key exists implicitly in every scope, unset, at version 0. The
    # library's creation event stands for that state and is not a fact: `handle`
    # drops it, so an entry's first event is its first ConfigValueSet (version 1)
    # and expected_version=0 means "never set".
    INITIAL_VERSION = 0

    @staticmethod
    def create_id(entry_id: str, **_: object) -> uuid.UUID:
        return uuid.UUID(entry_id)

    @event("ConfigEntryImplied")
    def __init__(self, entry_id: str, tenant_id: str, scope_kind: str, scope_id: str, key: str):
        self.tenant_id = tenant_id
        self.scope_kind = scope_kind
        self.scope_id = scope_id
        self.key = key
        self.value_json: str | None = None

    @property
    def is_set(self) -> bool:
        return self.value_json is not None

    def set_value(self, value_json: str) -> None:
        canonical = canonical_json(value_json)
        if canonical == self.value_json:
            return  # an unchanged value is no change: accepted, nothing recorded
        self._value_set(self.scope_kind, self.scope_id, self.key, canonical)

    def unset_value(self) -> None:
        check_is_set(self)
        self._value_unset(self.scope_kind, self.scope_id, self.key)

    @event("ConfigValueSet")
    def _value_set(self, scope_kind: str, scope_id: str, key: str, value_json: str) -> None:
        self.value_json = value_json

    @event("ConfigValueUnset")
    def _value_unset(self, scope_kind: str, scope_id: str, key: str) -> None:
        self.value_json = None


def entry_id(scope_kind: str, scope_id: str, key: str) -> str:
    """The canonical aggregate id (and Kafka key) of one key in one scope."""
    return str(uuid.uuid5(ENTRY_NAMESPACE, f"{scope_kind}/{scope_id}/{key}"))


def owner_tenant(scope_kind: str, scope_id: str) -> str:
    """The tenant that owns an entry: the tenant itself, or the platform."""
    return scope_id if scope_kind == TENANT else PLATFORM_TENANT


def check_scope(scope_kind: str, scope_id: str) -> None:
    if scope_kind not in SCOPE_KINDS:
        raise InvalidCommand(f"scope_kind must be one of {', '.join(SCOPE_KINDS)}, not {scope_kind!r}")
    if scope_kind == GLOBAL and scope_id != "":
        raise InvalidCommand(f"scope_id must be empty for the global scope, not {scope_id!r}")
    if scope_kind == ENVIRONMENT:
        check_environment(scope_id, "scope_id")
    if scope_kind == TENANT:
        check_tenant_id(scope_id, "scope_id")


def check_environment(name: str, field: str = "environment") -> None:
    if not isinstance(name, str) or not _ENVIRONMENT.fullmatch(name):
        raise InvalidCommand(f"{field} must be an environment name (lower-case letters, digits, '-'; ≤ 63), not {name!r}")


def check_tenant_id(tenant_id: str, field: str = "tenant_id") -> None:
    if not isinstance(tenant_id, str) or not tenant_id or len(tenant_id) > MAX_SCOPE_ID_LENGTH:
        raise InvalidCommand(f"{field} must be a tenant id of 1 to {MAX_SCOPE_ID_LENGTH} characters")
    if not _TENANT_ID.fullmatch(tenant_id):
        raise InvalidCommand(f"{field} must be a tenant id (letters, digits, '.', '_', ':', '-'), not {tenant_id!r}")
    if tenant_id == PLATFORM_TENANT:
        raise InvalidCommand(f"{field} {PLATFORM_TENANT!r} is reserved for global and environment entries")


def check_key(key: str, field: str = "key") -> None:
    if not isinstance(key, str) or not key or len(key) > MAX_KEY_LENGTH:
        raise InvalidCommand(f"{field} must be 1 to {MAX_KEY_LENGTH} characters")
    if not _KEY.fullmatch(key):
        raise InvalidCommand(
            f"{field} must be dotted lower-case segments, each starting with a letter "
            f"(a-z, 0-9, '_', '-'), like 'messaging.send_timeout_ms', not {key!r}"
        )


def check_key_prefix(prefix: str, field: str = "prefix") -> None:
    """A prefix of a valid key ('', 'messaging', 'messaging.', 'messaging.se')."""
    if not isinstance(prefix, str) or len(prefix) > MAX_KEY_LENGTH:
        raise InvalidCommand(f"{field} must be at most {MAX_KEY_LENGTH} characters")
    if prefix and not _KEY.fullmatch(prefix.removesuffix(".")):
        raise InvalidCommand(f"{field} must be the start of a dotted lower-case key, not {prefix!r}")


def canonical_json(value_json: str) -> str:
    """The one spelling a value is stored and compared in (compact, sorted object
    keys). Refuses what is not strict JSON, too large or too deeply nested."""
    if not isinstance(value_json, str) or not value_json.strip():
        raise InvalidCommand('value_json must be a JSON document (e.g. 42, "text", true, [1], {"a": 1})')
    if len(value_json.encode("utf-8", "surrogatepass")) > MAX_VALUE_BYTES:
        raise InvalidCommand(f"value_json must be at most {MAX_VALUE_BYTES} bytes")
    try:
        value = json.loads(value_json, parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError:
        raise InvalidCommand(f"value_json nests deeper than {MAX_VALUE_DEPTH} levels") from None
    except ValueError as exc:
        raise InvalidCommand(f"value_json is not valid JSON: {exc}") from None
    check_depth(value)
    canonical = json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    try:
        size = len(canonical.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidCommand("value_json contains an unpaired surrogate escape") from None
    if size > MAX_VALUE_BYTES:
        raise InvalidCommand(f"value_json must be at most {MAX_VALUE_BYTES} bytes")
    return canonical


def check_depth(value: object) -> None:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > MAX_VALUE_DEPTH:
                raise InvalidCommand(f"value_json nests deeper than {MAX_VALUE_DEPTH} levels")
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"number {text} is out of range")
    return number


def check_is_set(entry: ConfigEntry) -> None:
    if not entry.is_set:
        raise ConfigValueNotSet(f"{entry.key} has no value in the {_scope_name(entry.scope_kind, entry.scope_id)} scope")


def check_addresses_entry(command: SetConfigValue | UnsetConfigValue) -> None:
    """Scope and key are valid, the aggregate id is their canonical entry id and
    the command's tenant owns that scope."""
    meta = command.meta
    check_scope(command.scope_kind, command.scope_id)
    check_key(command.key)
    expected = entry_id(command.scope_kind, command.scope_id, command.key)
    if meta.aggregate_id != expected:
        raise InvalidCommand(
            f"aggregate id must be the entry id {expected} of {command.scope_kind}/{command.scope_id}/{command.key}, "
            f"not {meta.aggregate_id!r}"
        )
    owner = owner_tenant(command.scope_kind, command.scope_id)
    if meta.tenant_id != owner:
        raise TenantMismatch(f"the {_scope_name(command.scope_kind, command.scope_id)} scope does not belong to {meta.tenant_id}")


def _scope_name(scope_kind: str, scope_id: str) -> str:
    return f"{scope_kind} {scope_id!r}" if scope_id else scope_kind


def handle(entry: ConfigEntry | None, command: Command) -> ConfigEntry:
    """The one handler of every config command: returns the entry with its new
    pending events, or raises a Rejected subclass before changing anything."""
    if not isinstance(command, SetConfigValue | UnsetConfigValue):
        raise InvalidCommand(f"the config hub has no handler for {type(command).__name__}")
    check_addresses_entry(command)
    if entry is None:
        entry = ConfigEntry(
            entry_id=command.meta.aggregate_id,
            tenant_id=command.meta.tenant_id,
            scope_kind=command.scope_kind,
            scope_id=command.scope_id,
            key=command.key,
        )
        entry.collect_events()  # the implied version-0 state is not a fact (see ConfigEntry)
    if isinstance(command, SetConfigValue):
        entry.set_value(command.value_json)
    else:
        entry.unset_value()
    return entry
