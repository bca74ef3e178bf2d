"""The user read model's pure event → statements mapping, fed events the Profile
aggregate really emitted, wrapped in the processor's envelope and passed through
the real Avro codec, as the projector receives them. The PII rule is checked
here: clear email and phone go to `profiles` only."""

from __future__ import annotations

import re
import uuid

import pytest
from hypothesis import given as for_all
from hypothesis import settings
from hypothesis import strategies as st

from hubs.user.aggregate import profile_id
from hubs.user.commands import CreateProfile, RemovePreference, SetPreference, UpdateProfile
from hubs.user.hub import HUB
from infra.hub import decide, event_record
from infra.projection import Statement
from projections.user import PROJECTION
from projections.user.mapping import (
    CREATE_DIRECTORY,
    CREATE_PROFILE,
    CREATED,
    PREFERENCES,
    PUT_PREFERENCE,
    UPDATE_DIRECTORY,
    UPDATE_PROFILE,
    UPDATED,
    apply,
)
from schemas.codec import Catalog, Codec
from schemas.contracts import CommandMeta

CODEC = Codec(Catalog.load())
TENANT = "tenant-a"
EMAIL, PHONE, NAME = "alice.martin@example.com", "+33612345678", "Alice Martin"
EVENT_FIELDS = {
    name: [f["name"] for f in CODEC.catalog.latest(name).parsed["fields"] if f["name"] != "envelope"]
    for name in CODEC.catalog.names()
    if name.startswith("poseidon.user.") and ".commands." not in name
}


class Story:
    """Runs commands against one profile and keeps the event records the processor
    would have published, in order."""

    def __init__(self):
        self.principal_id = str(uuid.uuid4())
        self.profile_id = str(profile_id(TENANT, self.principal_id))
        self.profile = None
        self.records: list[tuple[str, dict]] = []

    def meta(self) -> CommandMeta:
        command_id = str(uuid.uuid4())
        return CommandMeta(command_id, self.profile_id, TENANT, f"corr-{command_id}", command_id, "test")

    def do(self, cls, **payload) -> list[tuple[str, dict]]:
        if cls is CreateProfile:
            payload = {"principal_id": self.principal_id, **payload}
        command = cls(self.meta(), **payload)
        decision = decide(HUB, self.profile, command)
        if not decision.accepted:
            return []
        self.profile = decision.aggregate
        new = []
        for domain_event in decision.events:
            name = HUB.event_name(domain_event)
            record = event_record(command.meta, name, domain_event, EVENT_FIELDS[name], event_id=str(uuid.uuid4()))
            decoded = CODEC.decode(CODEC.encode(name, record))
            new.append((decoded.name, decoded.record))
        self.records.extend(new)
        return new

    def only(self, cls, **payload) -> tuple[str, dict]:
        new = self.do(cls, **payload)
        assert len(new) == 1, f"{cls.__name__} was refused or emitted {len(new)} events"
        return new[0]


def created(**fields) -> Story:
    story = Story()
    story.only(
        CreateProfile,
        **{"display_name": NAME, "email": EMAIL, "phone": PHONE, "locale": "fr-FR", "timezone": "Europe/Paris", **fields},
    )
    return story


def test_profile_created_inserts_the_clear_profile_and_a_directory_entry_with_email_and_phone_masked():
    story = Story()
    event_type, record = story.only(
        CreateProfile, display_name=NAME, email=EMAIL, phone=PHONE, locale="fr-FR", timezone="Europe/Paris"
    )

    statements = apply(event_type, record)

    at, pid, principal = record["envelope"]["occurred_at"], uuid.UUID(story.profile_id), uuid.UUID(story.principal_id)
    assert statements == [
        Statement(CREATE_PROFILE, (pid, TENANT, principal, NAME, EMAIL, PHONE, "fr-FR", "Europe/Paris", 1, at), phase=CREATED),
        Statement(
            CREATE_DIRECTORY,
            (pid, TENANT, principal, NAME, "a***@example.com", "+33******78", "fr-FR", "Europe/Paris", 1, at),
            phase=CREATED,
        ),
    ]


def test_a_profile_without_a_phone_has_an_empty_masked_phone_in_the_directory():
    story = Story()
    event_type, record = story.only(CreateProfile, display_name=NAME, email=EMAIL)

    _, directory = apply(event_type, record)

    assert directory.args[5] == ""


def test_profile_updated_sets_the_changed_fields_in_clear_in_profiles_and_masked_in_the_directory():
    story = created()
    event_type, record = story.only(UpdateProfile, email="bob@work.example", phone="+4930123456", timezone="UTC")

    profile, directory = apply(event_type, record)

    pid, at = uuid.UUID(story.profile_id), record["envelope"]["occurred_at"]
    assert profile == Statement(UPDATE_PROFILE, (pid, None, "bob@work.example", "+4930123456", None, "UTC", 2, at), phase=UPDATED)
    assert directory == Statement(
        UPDATE_DIRECTORY, (pid, None, "b***@work.example", "+49******56", None, "UTC", 2, at), phase=UPDATED
    )


def test_removing_the_phone_empties_it_in_both_tables():
    story = created()
    event_type, record = story.only(UpdateProfile, phone="")

    profile, directory = apply(event_type, record)

    assert profile.args[3] == "" and directory.args[3] == ""


def test_preference_set_puts_the_value_and_moves_the_profile_version_in_both_tables():
    story = created()
    event_type, record = story.only(SetPreference, key="theme", value="dark")

    put, profile, directory = apply(event_type, record)

    pid, at = uuid.UUID(story.profile_id), record["envelope"]["occurred_at"]
    assert put == Statement(PUT_PREFERENCE, (pid, "theme", TENANT, "dark", 2, at), phase=PREFERENCES)
    assert profile == Statement(UPDATE_PROFILE, (pid, None, None, None, None, None, 2, at), phase=UPDATED)
    assert directory == Statement(UPDATE_DIRECTORY, (pid, None, None, None, None, None, 2, at), phase=UPDATED)


def test_preference_removed_keeps_a_row_with_no_value_at_the_removing_version():
    story = created()
    story.only(SetPreference, key="theme", value="dark")
    event_type, record = story.only(RemovePreference, key="theme")

    put, *_ = apply(event_type, record)

    assert put == Statement(
        PUT_PREFERENCE,
        (uuid.UUID(story.profile_id), "theme", TENANT, None, 3, record["envelope"]["occurred_at"]),
        phase=PREFERENCES,
    )


def test_the_mapping_handles_the_full_avro_name_and_the_bare_event_name_alike():
    story = created()
    event_type, record = story.only(SetPreference, key="theme", value="dark")

    assert event_type == "poseidon.user.PreferenceSet"
    assert apply("PreferenceSet", record) == apply(event_type, record)


@pytest.mark.parametrize("event_type", ["poseidon.user.ProfileDeleted", "poseidon.wallet.WalletOpened", "", "user"])
def test_an_event_type_the_read_model_does_not_know_raises_value_error_naming_it(event_type):
    _, record = created().records[0]

    with pytest.raises(ValueError, match="no mapping for"):
        apply(event_type, record)


def test_every_table_of_the_read_store_has_a_tenant_id_and_replay_compares_them_all():
    migration = (PROJECTION.migrations / "0001_profiles_directory_preferences.sql").read_text()
    tables = [chunk.split("(", 1) for chunk in migration.split("CREATE TABLE ")[1:]]

    assert [name.strip() for name, _ in tables] == list(PROJECTION.tables)
    assert all(re.search(r"\btenant_id\s+text NOT NULL", body) for _, body in tables)


def test_only_the_profiles_table_has_columns_for_a_clear_email_or_phone():
    migration = (PROJECTION.migrations / "0001_profiles_directory_preferences.sql").read_text()
    bodies = {name.strip(): body for name, body in (c.split("(", 1) for c in migration.split("CREATE TABLE ")[1:])}

    assert " email " in bodies["profiles"] and " phone " in bodies["profiles"]
    for table in ("profile_directory", "preferences"):
        columns = [line.split()[0] for line in bodies[table].splitlines() if line.strip() and not line.strip().startswith("--")]
        assert "email" not in columns and "phone" not in columns
    assert "email_masked" in bodies["profile_directory"]


# -- any sequence ------------------------------------------------------------

EMAILS = st.sampled_from([EMAIL, "bob@example.org", "carol.x@mail.example.net"])
PHONES = st.sampled_from([PHONE, "", "+14155552671", "+4930123456"])
STEPS = st.lists(
    st.one_of(
        st.tuples(st.just(UpdateProfile), st.fixed_dictionaries({}, optional={"email": EMAILS, "phone": PHONES})),
        st.tuples(
            st.just(SetPreference),
            st.fixed_dictionaries(
                {"key": st.sampled_from(["theme", "notifications.sms"]), "value": st.sampled_from(["true", "dark"])}
            ),
        ),
        st.tuples(st.just(RemovePreference), st.fixed_dictionaries({"key": st.sampled_from(["theme", "notifications.sms"])})),
    ),
    max_size=25,
)


@settings(max_examples=100, deadline=None)
@for_all(STEPS)
def test_for_any_sequence_no_clear_email_or_phone_reaches_the_directory_and_versions_follow_the_events(steps):
    story = created()
    for cls, payload in steps:
        story.do(cls, **payload)
    clear = {EMAIL, "bob@example.org", "carol.x@mail.example.net", PHONE, "+14155552671", "+4930123456"}

    versions = []
    for event_type, record in story.records:
        statements = apply(event_type, record)
        for statement in statements:
            if statement.sql in (CREATE_DIRECTORY, UPDATE_DIRECTORY, PUT_PREFERENCE):
                assert not clear & {a for a in statement.args if isinstance(a, str)}
        [version] = {s.args[-2] for s in statements}  # every statement of an event carries its version
        versions.append(version)

    assert versions == list(range(1, story.profile.version + 1))
