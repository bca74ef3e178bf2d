"""The config entry's rules as given / when / then over `infra.hub.decide`, the
same pure step the aggregate processor runs: scopes, keys and values are checked,
an entry id is the one canonical id of its scope and key, the owner of a scope is
the only tenant that may change it, and only real changes are recorded."""

from __future__ import annotations

import json
import uuid

import pytest

from hubs.config.aggregate import (
    MAX_KEY_LENGTH,
    MAX_VALUE_BYTES,
    MAX_VALUE_DEPTH,
    PLATFORM_TENANT,
    ConfigEntry,
    canonical_json,
    entry_id,
)
from hubs.config.commands import SetConfigValue, UnsetConfigValue
from hubs.config.hub import HUB
from infra.hub import SnapshotCodec, event_payload
from schemas.codec import Catalog, Codec
from schemas.contracts import CommandMeta
from tests.unit.given_when_then import Fact, Hub, given, happened, only_event, then_rejected

TENANT = "tenant-a"
OTHER_TENANT = "tenant-b"


def meta(aggregate_id: str, tenant: str, *, expected_version: int | None = None) -> CommandMeta:
    command_id = str(uuid.uuid4())
    return CommandMeta(
        command_id=command_id,
        aggregate_id=aggregate_id,
        tenant_id=tenant,
        correlation_id=command_id,
        causation_id=command_id,
        actor="test",
        expected_version=expected_version,
    )


class Key:
    """Builds commands for one key in one scope, addressed as the service would."""

    def __init__(self, scope_kind: str = "tenant", scope_id: str = TENANT, key: str = "messaging.send_timeout_ms"):
        self.scope_kind, self.scope_id, self.key = scope_kind, scope_id, key
        self.entry_id = entry_id(scope_kind, scope_id, key)
        self.owner = scope_id if scope_kind == "tenant" else PLATFORM_TENANT

    def set(self, value_json: str, *, tenant: str | None = None, aggregate_id: str | None = None, **m) -> SetConfigValue:
        return SetConfigValue(
            meta(aggregate_id or self.entry_id, tenant or self.owner, **m), self.scope_kind, self.scope_id, self.key, value_json
        )

    def unset(self, *, tenant: str | None = None, **m) -> UnsetConfigValue:
        return UnsetConfigValue(meta(self.entry_id, tenant or self.owner, **m), self.scope_kind, self.scope_id, self.key)

    # -- what happened to the entry, for `given` --

    def implied(self) -> Fact:
        """The entry's implied, never-set state at version 0 (not a fact on the log: see ConfigEntry)."""
        return happened(
            ConfigEntry.ConfigEntryImplied,
            entry_id=self.entry_id,
            tenant_id=self.owner,
            scope_kind=self.scope_kind,
            scope_id=self.scope_id,
            key=self.key,
        )

    def value_set(self, value_json: str) -> Fact:
        """ConfigValueSet, which records the value in its canonical spelling."""
        return happened(
            ConfigEntry.ConfigValueSet,
            scope_kind=self.scope_kind,
            scope_id=self.scope_id,
            key=self.key,
            value_json=canonical_json(value_json),
        )

    def value_unset(self) -> Fact:
        return happened(ConfigEntry.ConfigValueUnset, scope_kind=self.scope_kind, scope_id=self.scope_id, key=self.key)


when = Hub(HUB).when


# -- setting -----------------------------------------------------------------


def test_the_first_value_of_a_key_in_a_tenant_scope_is_recorded_as_config_value_set_version_1():
    k = Key()

    decision = when(None, k.set("250"))

    event = only_event(decision)
    assert HUB.event_name(event) == "poseidon.config.ConfigValueSet"
    assert (event.scope_kind, event.scope_id, event.key, event.value_json) == ("tenant", TENANT, k.key, "250")
    assert event.originator_id == uuid.UUID(k.entry_id)
    assert event.originator_version == 1
    entry = decision.aggregate
    assert (entry.tenant_id, entry.value_json, entry.version, entry.is_set) == (TENANT, "250", 1, True)


@pytest.mark.parametrize(("scope_kind", "scope_id"), [("global", ""), ("environment", "production")])
def test_global_and_environment_values_belong_to_the_platform_tenant(scope_kind, scope_id):
    k = Key(scope_kind, scope_id)

    decision = when(None, k.set('"on"'))

    event = only_event(decision)
    assert (event.scope_kind, event.scope_id) == (scope_kind, scope_id)
    assert decision.aggregate.tenant_id == PLATFORM_TENANT


def test_a_new_value_is_recorded_as_the_next_version():
    k = Key()
    entry = given(k.implied(), k.value_set("1"), k.value_set("2"))

    event = only_event(when(entry, k.set("3")))

    assert (event.value_json, event.originator_version) == ("3", 3)
    assert entry.value_json == "3"


def test_values_are_recorded_as_canonical_json_compact_with_sorted_object_keys():
    event = only_event(when(None, Key().set('{ "b": [1, 2.50, true],\n  "a": {"z": null, "y": "é"} }')))

    assert event.value_json == '{"a":{"y":"é","z":null},"b":[1,2.5,true]}'
    assert json.loads(event.value_json) == {"a": {"y": "é", "z": None}, "b": [1, 2.5, True]}


def test_setting_the_value_a_key_already_has_is_accepted_and_records_nothing():
    k = Key()
    entry = given(k.implied(), k.value_set('{"a": 1, "b": 2}'))

    decision = when(entry, k.set('{"b":2,"a":1}'))

    assert decision.accepted and decision.events == []
    assert decision.version == 1


def test_expected_version_zero_means_the_key_was_never_set_in_that_scope():
    k = Key()

    assert only_event(when(None, k.set("1", expected_version=0))).originator_version == 1
    then_rejected(
        when(given(k.implied(), k.value_set("1")), k.set("2", expected_version=0)), "VersionConflict", "expected version 0"
    )


def test_a_set_with_the_current_expected_version_is_accepted_and_a_stale_one_refused():
    k = Key()
    entry = given(k.implied(), k.value_set("1"), k.value_set("2"))

    then_rejected(when(entry, k.set("9", expected_version=1)), "VersionConflict")
    assert only_event(when(entry, k.set("3", expected_version=2))).originator_version == 3


# -- unsetting -----------------------------------------------------------------


def test_unsetting_a_set_key_records_config_value_unset_and_leaves_no_value():
    k = Key("environment", "staging")
    entry = given(k.implied(), k.value_set("true"))

    event = only_event(when(entry, k.unset()))

    assert HUB.event_name(event) == "poseidon.config.ConfigValueUnset"
    assert (event.scope_kind, event.scope_id, event.key, event.originator_version) == ("environment", "staging", k.key, 2)
    assert entry.value_json is None and not entry.is_set


def test_a_key_set_again_after_an_unset_continues_its_versions():
    k = Key()
    entry = given(k.implied(), k.value_set("1"), k.value_unset())

    assert only_event(when(entry, k.set("1"))).originator_version == 3


def test_unsetting_a_key_that_was_never_set_is_refused_as_not_set():
    decision = when(None, Key().unset())

    then_rejected(decision, "ConfigValueNotSet", "has no value in the tenant 'tenant-a' scope")
    assert decision.aggregate is None


def test_unsetting_a_key_twice_is_refused_the_second_time():
    k = Key("global", "")
    entry = given(k.implied(), k.value_set("1"), k.value_unset())

    then_rejected(when(entry, k.unset()), "ConfigValueNotSet", "in the global scope")
    assert entry.version == 2


# -- who owns a scope ------------------------------------------------------------


def test_a_tenant_cannot_set_another_tenants_value():
    k = Key("tenant", TENANT)

    decision = when(None, k.set("1", tenant=OTHER_TENANT))

    then_rejected(decision, "TenantMismatch")
    assert decision.aggregate is None


@pytest.mark.parametrize(("scope_kind", "scope_id"), [("global", ""), ("environment", "production")])
def test_a_tenant_cannot_set_a_global_or_environment_value(scope_kind, scope_id):
    then_rejected(when(None, Key(scope_kind, scope_id).set("1", tenant=TENANT)), "TenantMismatch")


def test_a_set_entry_refuses_commands_from_another_tenant():
    k = Key()
    entry = given(k.implied(), k.value_set("1"))

    then_rejected(when(entry, k.unset(tenant=OTHER_TENANT)), "TenantMismatch")
    assert entry.value_json == "1"


# -- the canonical entry id ------------------------------------------------------


def test_an_entry_id_is_the_same_for_the_same_scope_and_key_and_differs_otherwise():
    ids = {
        entry_id("global", "", "a.b"),
        entry_id("environment", "production", "a.b"),
        entry_id("environment", "staging", "a.b"),
        entry_id("tenant", TENANT, "a.b"),
        entry_id("tenant", OTHER_TENANT, "a.b"),
        entry_id("tenant", TENANT, "a.c"),
    }
    assert len(ids) == 6
    assert (
        entry_id("tenant", TENANT, "a.b")
        == entry_id("tenant", TENANT, "a.b")
        == str(uuid.UUID(entry_id("tenant", TENANT, "a.b")))
    )


def test_entry_ids_never_change_because_they_are_the_keys_of_events_already_written():
    assert entry_id("global", "", "bot.greeting") == "bf91c305-67a0-5a29-b844-6cced120afe9"
    assert entry_id("tenant", "acme", "bot.greeting") == "9a93dec7-4758-5bc6-8875-4389de756aca"


@pytest.mark.parametrize(
    "aggregate_id",
    [
        lambda k: k.entry_id.upper(),
        lambda k: k.entry_id.replace("-", ""),
        lambda k: str(uuid.uuid4()),
        lambda k: entry_id("tenant", OTHER_TENANT, k.key),
        lambda k: "messaging.send_timeout_ms",
    ],
)
def test_a_command_whose_aggregate_id_is_not_the_canonical_entry_id_is_invalid(aggregate_id):
    k = Key()

    decision = when(None, k.set("1", aggregate_id=aggregate_id(k)))

    then_rejected(decision, "InvalidCommand", f"must be the entry id {k.entry_id}")


# -- scopes, keys and values ------------------------------------------------------


@pytest.mark.parametrize(
    ("scope_kind", "scope_id", "mentioning"),
    [
        ("region", "eu", "scope_kind must be one of global, environment, tenant"),
        ("Tenant", TENANT, "scope_kind"),
        ("global", "everything", "scope_id must be empty for the global scope"),
        ("environment", "", "environment name"),
        ("environment", "Production", "environment name"),
        ("environment", "prod/eu", "environment name"),
        ("tenant", "", "tenant id of 1 to"),
        ("tenant", "a/b", "tenant id"),
        ("tenant", PLATFORM_TENANT, "reserved"),
    ],
)
def test_a_scope_that_is_not_valid_is_refused_naming_what_is_wrong(scope_kind, scope_id, mentioning):
    cmd = SetConfigValue(
        meta(entry_id(scope_kind, scope_id, "a.b"), scope_id or PLATFORM_TENANT), scope_kind, scope_id, "a.b", "1"
    )

    then_rejected(when(None, cmd), "InvalidCommand", mentioning)


@pytest.mark.parametrize(
    "key",
    ["", "Messaging.timeout", "messaging..timeout", ".messaging", "messaging.", "1st.key", "messaging.9lives",
     "with space", "slash/key", "ümlaut", "a" * (MAX_KEY_LENGTH + 1)],
)  # fmt: skip
def test_a_key_that_is_not_dotted_lower_case_of_at_most_200_characters_is_invalid(key):
    then_rejected(when(None, Key(key=key).set("1")), "InvalidCommand", "key must be")


@pytest.mark.parametrize("key", ["a", "messaging.send_timeout_ms", "spoke.facebook.retry-after", "a" * MAX_KEY_LENGTH, "v2.x9"])
def test_dotted_lower_case_keys_up_to_200_characters_are_accepted(key):
    assert only_event(when(None, Key(key=key).set("1"))).key == key


@pytest.mark.parametrize(
    ("value_json", "mentioning"),
    [
        ("", "must be a JSON document"),
        ("   ", "must be a JSON document"),
        ("{not json}", "not valid JSON"),
        ("'single quotes'", "not valid JSON"),
        ("[1, 2", "not valid JSON"),
        ("1 2", "not valid JSON"),
        ("NaN", "not valid JSON"),
        ("[Infinity]", "not valid JSON"),
        ("1e400", "out of range"),
        ('"\\ud800"', "unpaired surrogate"),
        ("[" * (MAX_VALUE_DEPTH + 1) + "]" * (MAX_VALUE_DEPTH + 1), f"deeper than {MAX_VALUE_DEPTH}"),
        ("[" * 100_000 + "]" * 100_000, "at most 65536 bytes"),
        ("[" * 30_000 + "]" * 30_000, f"deeper than {MAX_VALUE_DEPTH}"),
    ],
)
def test_a_value_that_is_not_strict_json_or_too_large_or_too_deep_is_invalid(value_json, mentioning):
    then_rejected(when(None, Key().set(value_json)), "InvalidCommand", mentioning)


def test_a_value_of_exactly_64_kib_is_accepted_and_one_byte_more_is_not():
    at_limit = json.dumps("x" * (MAX_VALUE_BYTES - 2))
    assert len(at_limit.encode()) == MAX_VALUE_BYTES

    assert only_event(when(None, Key().set(at_limit))).value_json == at_limit
    then_rejected(when(None, Key().set(json.dumps("x" * (MAX_VALUE_BYTES - 1)))), "InvalidCommand", "at most")


def test_the_size_limit_counts_utf8_bytes_not_characters():
    too_large = json.dumps("é" * (MAX_VALUE_BYTES // 2), ensure_ascii=False)  # 2 bytes each

    then_rejected(when(None, Key().set(too_large)), "InvalidCommand", "at most")


def test_a_refused_value_leaves_the_entry_as_it_was():
    k = Key()
    entry = given(k.implied(), k.value_set("1"))

    then_rejected(when(entry, k.set("{oops")), "InvalidCommand")
    assert (entry.value_json, entry.version) == ("1", 1)


def test_canonical_json_is_stable_under_reformatting():
    assert canonical_json(canonical_json('{"b": 1, "a": [1, {"d": 2, "c": 3}]}')) == '{"a":[1,{"c":3,"d":2}],"b":1}'


def test_a_command_of_another_hub_is_invalid():
    from hubs.wallet.commands import CreditFunds

    then_rejected(when(None, CreditFunds(meta(Key().entry_id, TENANT), amount=1)), "InvalidCommand", "no handler")


# -- what the processor does with the entry ---------------------------------------


def test_an_entry_survives_the_processors_snapshot_round_trip_with_its_version_and_value():
    k = Key("environment", "production")
    entry = given(k.implied(), k.value_set('{"a": 1}'), k.value_set("[2]"), k.value_unset(), k.value_set('"x"'))
    codec = SnapshotCodec()

    restored, last_hash = codec.loads(codec.dumps(entry, "abc"))

    assert last_hash == "abc"
    assert (restored.version, restored.value_json, restored.tenant_id) == (4, '"x"', PLATFORM_TENANT)
    assert (restored.scope_kind, restored.scope_id, restored.key) == ("environment", "production", k.key)
    assert only_event(when(restored, k.unset())).originator_version == 5


def test_every_event_carries_exactly_its_schema_fields_and_encodes_with_the_real_codec():
    codec = Codec(Catalog.load())
    k = Key()
    events = [only_event(when(given(k.implied(), k.value_set("1")), k.unset())), only_event(when(None, k.set("2")))]
    for event in events:
        name = HUB.event_name(event)
        fields = [f["name"] for f in codec.catalog.latest(name).parsed["fields"] if f["name"] != "envelope"]
        payload = event_payload(event, fields)
        envelope = {
            "event_id": str(uuid.uuid4()), "event_type": name, "aggregate_id": k.entry_id,
            "aggregate_version": event.originator_version, "tenant_id": TENANT, "correlation_id": "c",
            "causation_id": "c", "occurred_at": event.timestamp, "actor": "a", "previous_hash": "",
        }  # fmt: skip
        decoded = codec.decode(codec.encode(name, {"envelope": envelope, **payload}))
        assert {f: decoded.record[f] for f in fields} == payload
