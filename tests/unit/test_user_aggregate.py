"""The User hub's profile rules as given / when / then over `infra.hub.decide`, the
same pure step the aggregate processor runs. No broker, no database."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given as for_all
from hypothesis import settings
from hypothesis import strategies as st

from hubs.user.aggregate import PREFERENCES, PROFILE_NAMESPACE, Profile, profile_id
from hubs.user.commands import CreateProfile, RemovePreference, SetPreference, UpdateProfile
from hubs.user.hub import HUB
from schemas.contracts import CommandMeta
from tests.unit.given_when_then import Fact, Hub, given, happened, only_event, then_rejected

TENANT = "tenant-a"
OTHER_TENANT = "tenant-b"
EMAIL, PHONE, NAME = "alice.martin@example.com", "+33612345678", "Alice Martin"


def meta(aggregate_id: str, *, tenant: str = TENANT, expected_version: int | None = None) -> CommandMeta:
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


class Story:
    """Builds commands for one principal's profile in one tenant."""

    def __init__(self, principal_id: str | None = None, tenant: str = TENANT):
        self.principal_id = str(uuid.uuid4()) if principal_id is None else principal_id
        self.tenant = tenant
        self.profile_id = str(profile_id(tenant, self.principal_id))

    def create(self, *, display_name=NAME, email=EMAIL, phone=PHONE, locale="fr-FR", timezone="Europe/Paris", **m):
        m.setdefault("tenant", self.tenant)
        return CreateProfile(
            meta(m.pop("aggregate_id", self.profile_id), **m),
            principal_id=m.pop("principal_id", self.principal_id),
            display_name=display_name,
            email=email,
            phone=phone,
            locale=locale,
            timezone=timezone,
        )

    def update(self, tenant: str | None = None, **fields) -> UpdateProfile:
        return UpdateProfile(meta(self.profile_id, tenant=tenant or self.tenant), **fields)

    def set(self, key: str, value: str) -> SetPreference:
        return SetPreference(meta(self.profile_id, tenant=self.tenant), key=key, value=value)

    def remove(self, key: str) -> RemovePreference:
        return RemovePreference(meta(self.profile_id, tenant=self.tenant), key=key)

    # -- what happened to the profile, for `given` --

    def created(self, *, display_name=NAME, email=EMAIL, phone=PHONE, locale="fr-FR", timezone="Europe/Paris") -> Fact:
        return happened(
            Profile.ProfileCreated,
            tenant_id=self.tenant,
            principal_id=self.principal_id,
            display_name=display_name,
            email=email,
            phone=phone,
            locale=locale,
            timezone=timezone,
        )

    def preference_set(self, key: str, value: str) -> Fact:
        return happened(Profile.PreferenceSet, key=key, value=value)


when = Hub(HUB).when


def created_by(command: CreateProfile) -> Profile:
    """The profile `command` creates, which must be accepted."""
    decision = when(None, command)
    only_event(decision, "ProfileCreated")
    return decision.aggregate


# -- the profile id ------------------------------------------------------------


def test_the_profile_id_is_the_uuid5_of_tenant_slash_principal_in_a_fixed_namespace():
    principal = "6f1c1b9e-58c4-4a77-9a1e-3f0e8f3b2a10"

    assert PROFILE_NAMESPACE == uuid.uuid5(uuid.NAMESPACE_URL, "urn:poseidon:user:profile")
    assert profile_id(TENANT, principal) == uuid.uuid5(PROFILE_NAMESPACE, f"{TENANT}/{principal}")
    assert profile_id(TENANT, principal) == profile_id(TENANT, principal)


def test_one_principal_has_a_separate_profile_in_each_tenant():
    principal = str(uuid.uuid4())

    assert profile_id(TENANT, principal) != profile_id(OTHER_TENANT, principal)


def test_the_created_profile_takes_its_id_from_tenant_and_principal():
    story = Story()

    profile = created_by(story.create())

    assert profile.id == profile_id(TENANT, story.principal_id)


# -- CreateProfile -------------------------------------------------------------


def test_create_profile_records_profile_created_with_every_field():
    story = Story()

    event = only_event(when(None, story.create()), "ProfileCreated")

    assert event.originator_version == 1
    assert (event.principal_id, event.display_name, event.email, event.phone, event.locale, event.timezone) == (
        story.principal_id, NAME, EMAIL, PHONE, "fr-FR", "Europe/Paris",
    )  # fmt: skip
    assert event.tenant_id == TENANT


def test_a_profile_may_be_created_without_a_phone():
    profile = created_by(Story().create(phone=""))

    assert profile.phone == ""


def test_create_profile_under_any_other_aggregate_id_is_refused_naming_the_right_one():
    story = Story()

    reason = then_rejected(when(None, story.create(aggregate_id=str(uuid.uuid4()))), "InvalidCommand", story.profile_id)

    assert "uuid5" in reason


def test_a_profile_id_computed_for_another_tenant_is_refused():
    story = Story()
    other = str(profile_id(OTHER_TENANT, story.principal_id))

    then_rejected(when(None, story.create(aggregate_id=other)), "InvalidCommand", story.profile_id)


@pytest.mark.parametrize(
    "principal", ["not-a-uuid", "", "6F1C1B9E-58C4-4A77-9A1E-3F0E8F3B2A10", "{6f1c1b9e-58c4-4a77-9a1e-3f0e8f3b2a10}"]
)
def test_a_principal_id_that_is_not_a_canonical_uuid_is_refused(principal):
    story = Story(principal_id=principal)

    then_rejected(when(None, story.create()), "InvalidCommand", "principal_id")


def test_a_second_create_profile_for_the_same_principal_and_tenant_is_refused():
    story = Story()
    profile = given(story.created())

    then_rejected(when(profile, story.create(email="other@example.com")), "AggregateAlreadyExists", story.principal_id)
    assert profile.email == EMAIL


VALID_EMAILS = [
    "a@b.co",
    "alice@example.com",
    "alice.martin+tag@mail.example.co.uk",
    "o'brien@example.ie",
    "x_y-z@sub-domain.example.org",
    "user@xn--80ak6aa92e.xn--p1ai",
    "UPPER@EXAMPLE.COM",
]
INVALID_EMAILS = [
    ("", "required"),
    ("alice", "exactly one '@'"),
    ("alice@@example.com", "exactly one '@'"),
    ("alice@bob@example.com", "exactly one '@'"),
    ("@example.com", "before the '@'"),
    ("a" * 65 + "@example.com", "before the '@'"),
    ("al ice@example.com", "not allowed"),
    ("alice\n@example.com", "not allowed"),
    ("alice(comment)@example.com", "not allowed"),
    (".alice@example.com", "'.'"),
    ("alice.@example.com", "'.'"),
    ("al..ice@example.com", "'.'"),
    ("alice@localhost", "two labels"),
    ("alice@", "two labels"),
    ("alice@example..com", "labels"),
    ("alice@-example.com", "labels"),
    ("alice@example-.com", "labels"),
    ("alice@exa_mple.com", "labels"),
    ("alice@" + "a" * 64 + ".com", "labels"),
    ("alice@example.c0m", "top-level"),
    ("alice@example.c", "top-level"),
    ("alice@127.0.0.1", "top-level"),
    ("a" * 60 + "@" + ".".join(["b" * 60] * 4) + ".com", "at most 254"),
]


@pytest.mark.parametrize("email", VALID_EMAILS)
def test_a_well_formed_email_is_accepted(email):
    assert created_by(Story().create(email=email)).email == email


@pytest.mark.parametrize("email, why", INVALID_EMAILS)
def test_a_malformed_email_is_refused_with_a_reason_that_does_not_repeat_it(email, why):
    reason = then_rejected(when(None, Story().create(email=email)), "InvalidCommand", "email", why)

    if email:
        assert email not in reason
        local, _, domain = email.partition("@")
        assert not (len(local) > 2 and local in reason)
        assert not (len(domain) > 3 and domain in reason)


VALID_PHONES = ["+33612345678", "+14155552671", "+447911123456", "+8613800138000", "+6834002", "+123456789012345"]
INVALID_PHONES = [
    ("0612345678", "E.164"),
    ("33612345678", "E.164"),
    ("+33 6 12 34 56 78", "only digits"),
    ("+33-612-345-678", "only digits"),
    ("+(33)612345678", "only digits"),
    ("+33612345678x9", "only digits"),
    ("+٣٣٦١٢٣٤٥٦٧٨", "only digits"),
    ("+", "digits"),
    ("+123456", "7 to 15 digits"),
    ("+1234567890123456", "7 to 15 digits"),
    ("+0612345678", "must not start with 0"),
    ("+33612345678\n", "only digits"),
]


@pytest.mark.parametrize("phone", VALID_PHONES)
def test_an_e164_phone_is_accepted(phone):
    assert created_by(Story().create(phone=phone)).phone == phone


@pytest.mark.parametrize("phone, why", INVALID_PHONES)
def test_a_phone_not_in_e164_form_is_refused_with_a_reason_that_does_not_repeat_it(phone, why):
    reason = then_rejected(when(None, Story().create(phone=phone)), "InvalidCommand", "phone", why)

    digits = "".join(c for c in phone if c.isdigit())
    assert not (len(phone) > 3 and phone in reason)
    assert not (len(digits) >= 6 and digits in reason)


@pytest.mark.parametrize(
    "display_name, why",
    [
        ("", "required"),
        ("   ", "required"),
        (" Alice", "white space"),
        ("Alice ", "white space"),
        ("Ali\x00ce", "control"),
        ("Alice\nMartin", "control"),
        ("A" * 101, "at most 100"),
    ],
)
def test_a_display_name_that_is_empty_padded_too_long_or_has_control_characters_is_refused(display_name, why):
    reason = then_rejected(when(None, Story().create(display_name=display_name)), "InvalidCommand", "display_name", why)

    if display_name.strip():
        assert display_name.strip() not in reason


@pytest.mark.parametrize("display_name", ["A", "Zoë Ångström", "李小龙", "Jean-Luc O'Neil", "A" * 100])
def test_a_display_name_of_any_script_up_to_100_characters_is_accepted(display_name):
    assert created_by(Story().create(display_name=display_name)).display_name == display_name


@pytest.mark.parametrize("locale", ["english", "EN", "en_US", "en-us", "fr-FRA", "", "en\n"])
def test_a_locale_that_is_not_a_language_tag_is_refused(locale):
    then_rejected(when(None, Story().create(locale=locale)), "InvalidCommand", "locale")


@pytest.mark.parametrize("locale", ["en", "fr-FR", "pt-BR", "es-419", "zh-Hant-TW", "haw"])
def test_a_language_tag_is_accepted_as_locale(locale):
    assert created_by(Story().create(locale=locale)).locale == locale


@pytest.mark.parametrize("timezone", ["Mars/Olympus", "CEST", "+02:00", "europe/paris", "", "UTC\n"])
def test_a_timezone_that_is_not_an_iana_name_is_refused(timezone):
    then_rejected(when(None, Story().create(timezone=timezone)), "InvalidCommand", "timezone", "IANA")


@pytest.mark.parametrize("timezone", ["UTC", "Europe/Paris", "America/Argentina/Buenos_Aires", "Asia/Kolkata"])
def test_an_iana_timezone_is_accepted(timezone):
    assert created_by(Story().create(timezone=timezone)).timezone == timezone


# -- UpdateProfile -------------------------------------------------------------


def test_update_profile_changes_only_the_fields_given_and_records_only_those():
    story = Story()
    profile = given(story.created())

    event = only_event(when(profile, story.update(email="alice@work.example", timezone="UTC")), "ProfileUpdated")

    assert (event.display_name, event.email, event.phone, event.locale, event.timezone) == (
        None, "alice@work.example", None, None, "UTC",
    )  # fmt: skip
    assert (profile.display_name, profile.email, profile.phone, profile.locale, profile.timezone) == (
        NAME, "alice@work.example", PHONE, "fr-FR", "UTC",
    )  # fmt: skip
    assert profile.version == 2


def test_a_field_given_with_its_current_value_is_not_recorded_as_changed():
    story = Story()
    profile = given(story.created())

    event = only_event(when(profile, story.update(email=EMAIL, display_name="Alice M.")), "ProfileUpdated")

    assert (event.email, event.display_name) == (None, "Alice M.")


def test_an_empty_phone_removes_the_phone():
    story = Story()
    profile = given(story.created())

    event = only_event(when(profile, story.update(phone="")), "ProfileUpdated")

    assert event.phone == "" and profile.phone == ""


def test_update_profile_with_no_field_is_refused():
    story = Story()
    profile = given(story.created())

    then_rejected(when(profile, story.update()), "InvalidCommand", "at least one")


def test_update_profile_that_changes_nothing_is_refused_as_nothing_to_change():
    story = Story()
    profile = given(story.created())

    then_rejected(when(profile, story.update(email=EMAIL, locale="fr-FR")), "NothingToChange", "email", "locale")
    assert profile.version == 1


@pytest.mark.parametrize(
    "fields, field",
    [
        ({"email": "not-an-email"}, "email"),
        ({"phone": "06 12 34 56 78"}, "phone"),
        ({"display_name": ""}, "display_name"),
        ({"locale": "French"}, "locale"),
        ({"timezone": "Paris"}, "timezone"),
        ({"display_name": "Bob", "email": "bob@"}, "email"),
    ],
)
def test_update_profile_validates_every_field_given_like_create_does(fields, field):
    story = Story()
    profile = given(story.created())

    then_rejected(when(profile, story.update(**fields)), "InvalidCommand", field)
    assert (profile.display_name, profile.email, profile.version) == (NAME, EMAIL, 1)


def test_update_profile_of_a_principal_without_a_profile_is_refused():
    then_rejected(when(None, Story().update(display_name="Bob")), "AggregateNotFound")


def test_another_tenant_cannot_update_a_profile():
    story = Story()
    profile = given(story.created())

    then_rejected(when(profile, story.update(tenant=OTHER_TENANT, display_name="Mallory")), "TenantMismatch")
    assert profile.display_name == NAME


# -- preferences ---------------------------------------------------------------


@pytest.mark.parametrize(
    "key, value",
    [
        ("notifications.email", "false"),
        ("notifications.sms", "true"),
        ("notifications.push", "false"),
        ("theme", "dark"),
        ("language", "pt-BR"),
    ],
)
def test_set_preference_records_an_allowed_key_and_value(key, value):
    story = Story()
    profile = given(story.created())

    event = only_event(when(profile, story.set(key, value)), "PreferenceSet")

    assert (event.key, event.value) == (key, value)
    assert profile.preferences == {key: value}


def test_setting_a_preference_again_with_another_value_replaces_it():
    story = Story()
    profile = given(story.created(), story.preference_set("theme", "dark"))

    only_event(when(profile, story.set("theme", "light")), "PreferenceSet")

    assert profile.preferences == {"theme": "light"}


@pytest.mark.parametrize("key", ["colour", "notifications", "notifications.fax", "Theme", "", "x" * 500])
def test_a_preference_key_outside_the_allow_list_is_refused_naming_the_allowed_keys(key):
    story = Story()
    profile = given(story.created())

    reason = then_rejected(when(profile, story.set(key, "true")), "InvalidCommand", *sorted(PREFERENCES))
    assert len(reason) < 300


@pytest.mark.parametrize(
    "key, value, allowed",
    [
        ("notifications.email", "yes", "true, false"),
        ("notifications.sms", "True", "true, false"),
        ("theme", "blue", "light, dark, system"),
        ("language", "Klingon", "language tag"),
        ("language", "", "language tag"),
    ],
)
def test_a_preference_value_the_key_does_not_allow_is_refused_naming_what_it_allows(key, value, allowed):
    story = Story()
    profile = given(story.created())

    then_rejected(when(profile, story.set(key, value)), "InvalidCommand", key, allowed)


def test_setting_a_preference_to_the_value_it_has_is_refused_as_nothing_to_change():
    story = Story()
    profile = given(story.created(), story.preference_set("theme", "dark"))

    then_rejected(when(profile, story.set("theme", "dark")), "NothingToChange", "theme")


def test_remove_preference_records_preference_removed_and_forgets_the_value():
    story = Story()
    profile = given(story.created(), story.preference_set("theme", "dark"), story.preference_set("notifications.sms", "true"))

    event = only_event(when(profile, story.remove("theme")), "PreferenceRemoved")

    assert event.key == "theme"
    assert profile.preferences == {"notifications.sms": "true"}


def test_removing_a_preference_that_is_not_set_is_refused_as_preference_not_set():
    story = Story()
    profile = given(story.created())

    then_rejected(when(profile, story.remove("theme")), "PreferenceNotSet", "theme")


def test_removing_a_key_outside_the_allow_list_is_refused_as_invalid():
    story = Story()
    profile = given(story.created())

    then_rejected(when(profile, story.remove("colour")), "InvalidCommand", "colour")


def test_preferences_of_a_principal_without_a_profile_are_refused():
    story = Story()

    then_rejected(when(None, story.set("theme", "dark")), "AggregateNotFound")
    then_rejected(when(None, story.remove("theme")), "AggregateNotFound")


# -- any rejection -------------------------------------------------------------


@pytest.mark.parametrize(
    "command, rule",
    [
        (lambda s: s.create(), "AggregateAlreadyExists"),
        (lambda s: s.update(email="bad@"), "InvalidCommand"),
        (lambda s: s.update(display_name=NAME), "NothingToChange"),
        (lambda s: s.update(tenant=OTHER_TENANT, locale="en"), "TenantMismatch"),
        (lambda s: s.set("theme", "dark"), "NothingToChange"),
        (lambda s: s.set("font", "big"), "InvalidCommand"),
        (lambda s: s.remove("notifications.sms"), "PreferenceNotSet"),
        (lambda s: UpdateProfile(meta(s.profile_id, expected_version=9), locale="en"), "VersionConflict"),
    ],
    ids=lambda p: p if isinstance(p, str) else "",
)
def test_a_rejected_command_records_no_event_and_leaves_the_profile_as_it_was(command, rule):
    story = Story()
    profile = given(story.created(), story.preference_set("theme", "dark"))
    before = (profile.version, profile.display_name, profile.email, profile.phone, dict(profile.preferences))

    decision = when(profile, command(story))

    then_rejected(decision, rule)
    assert decision.aggregate is profile
    assert (profile.version, profile.display_name, profile.email, profile.phone, dict(profile.preferences)) == before
    assert profile.collect_events() == []


KEYS = st.sampled_from([*PREFERENCES, "colour"])
VALUES = st.sampled_from(["true", "false", "dark", "light", "system", "en", "fr-FR", "nope"])
STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("set"), KEYS, VALUES),
        st.tuples(st.just("remove"), KEYS),
        st.tuples(st.just("update"), st.sampled_from(["en", "fr-FR", "de"]), st.sampled_from(["", PHONE, "+4930123456"])),
    ),
    max_size=30,
)


@settings(max_examples=100, deadline=None)
@for_all(STEPS)
def test_any_sequence_of_commands_keeps_only_allowed_preferences_and_one_version_per_event(steps):
    story = Story()
    profile = given(story.created())
    accepted = 0

    for verb, *args in steps:
        if verb == "update":
            command = story.update(locale=args[0], phone=args[1])
        else:
            command = getattr(story, verb)(*args)
        decision = when(profile, command)
        accepted += decision.accepted
        assert len(decision.events) == (1 if decision.accepted else 0)

        assert set(profile.preferences) <= set(PREFERENCES)
        for key, value in profile.preferences.items():
            allowed = PREFERENCES[key]
            assert value in allowed if allowed is not None else value in ("en", "fr-FR")
        assert profile.version == 1 + accepted
