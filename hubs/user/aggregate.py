"""The Profile aggregate: one per (tenant, principal). Decides (public verbs,
small named checks) and evolves (the @event methods only assign state). Pure: no
I/O. Rejection reasons never repeat a name, email or phone: they are logged and
published on the command-results topic."""

from __future__ import annotations

import re
import uuid
import zoneinfo
from functools import lru_cache

from eventsourcing.domain import Aggregate, event

from hubs.user.commands import CreateProfile, RemovePreference, SetPreference, UpdateProfile
from schemas.contracts import AggregateAlreadyExists, AggregateNotFound, Command, InvalidCommand, Rejected

PROFILE_NAMESPACE = uuid.UUID("f42760e4-14bc-5cdc-baf6-92b08ffb752a")
"""uuid5(NAMESPACE_URL, "urn:poseidon:user:profile"): the namespace of profile ids.
Never change it: profile ids are Kafka keys and read-store keys."""

MAX_DISPLAY_NAME = 100
MAX_EMAIL, MAX_EMAIL_LOCAL, MAX_DOMAIN_LABEL = 254, 64, 63
MIN_PHONE_DIGITS, MAX_PHONE_DIGITS = 7, 15  # E.164 allows at most 15 digits, country code included

_LOCAL_PART = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+")
_DOMAIN_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?")
_TOP_LEVEL_DOMAIN = re.compile(r"[A-Za-z]{2,}|xn--[A-Za-z0-9-]+")
_LANGUAGE_TAG = re.compile(r"[a-z]{2,3}(?:-[A-Z][a-z]{3})?(?:-(?:[A-Z]{2}|[0-9]{3}))?")

BOOLEAN = ("true", "false")
PREFERENCES: dict[str, tuple[str, ...] | None] = {
    "language": None,  # a language tag, checked like the profile's locale
    "notifications.email": BOOLEAN,
    "notifications.sms": BOOLEAN,
    "notifications.push": BOOLEAN,
    "theme": ("light", "dark", "system"),
}
"""The preference keys a profile may hold, with their allowed values."""
UPDATABLE = ("display_name", "email", "phone", "locale", "timezone")
"""Profile fields UpdateProfile may change."""


class NothingToChange(Rejected):
    """The command would record a fact that changes nothing."""


class PreferenceNotSet(Rejected):
    """RemovePreference for a key the profile does not hold."""


def profile_id(tenant_id: str, principal_id: str) -> uuid.UUID:
    """The profile of `principal_id` in `tenant_id`. A principal id is a canonical
    UUID (no '/'), so the name `<tenant>/<principal>` is unambiguous."""
    return uuid.uuid5(PROFILE_NAMESPACE, f"{tenant_id}/{principal_id}")


class Profile(Aggregate):
    @staticmethod
    def create_id(tenant_id: str, principal_id: str, **_: object) -> uuid.UUID:
        return profile_id(tenant_id, principal_id)

    @event("ProfileCreated")
    def __init__(self, tenant_id: str, principal_id: str, display_name: str, email: str, phone: str, locale: str, timezone: str):
        self.tenant_id = tenant_id
        self.principal_id = principal_id
        self.display_name = display_name
        self.email = email
        self.phone = phone
        self.locale = locale
        self.timezone = timezone
        self.preferences: dict[str, str] = {}

    def update(self, changes: dict[str, str | None]) -> None:
        given = {k: v for k, v in changes.items() if v is not None}
        if not given:
            raise InvalidCommand("UpdateProfile needs at least one of display_name, email, phone, locale, timezone")
        check_contact_fields(**given)
        changed = {k: v for k, v in given.items() if getattr(self, k) != v}
        if not changed:
            raise NothingToChange(f"the profile already has these values for {', '.join(sorted(given))}")
        self._profile_updated(**{k: changed.get(k) for k in UPDATABLE})

    def set_preference(self, key: str, value: str) -> None:
        check_preference(key, value)
        if self.preferences.get(key) == value:
            raise NothingToChange(f"preference {key} is already {value}")
        self._preference_set(key, value)

    def remove_preference(self, key: str) -> None:
        check_preference_key(key)
        if key not in self.preferences:
            raise PreferenceNotSet(f"preference {key} is not set on this profile")
        self._preference_removed(key)

    @event("ProfileUpdated")
    def _profile_updated(
        self, display_name: str | None, email: str | None, phone: str | None, locale: str | None, timezone: str | None
    ) -> None:
        for name, value in (
            ("display_name", display_name), ("email", email), ("phone", phone), ("locale", locale), ("timezone", timezone),
        ):  # fmt: skip
            if value is not None:
                setattr(self, name, value)

    @event("PreferenceSet")
    def _preference_set(self, key: str, value: str) -> None:
        self.preferences[key] = value

    @event("PreferenceRemoved")
    def _preference_removed(self, key: str) -> None:
        del self.preferences[key]


# -- named checks ---------------------------------------------------------------


def check_principal_id(principal_id: str) -> None:
    # Only the canonical spelling: two spellings of one UUID would be two profiles.
    try:
        canonical = str(uuid.UUID(principal_id))
    except (ValueError, TypeError, AttributeError):
        raise InvalidCommand(f"principal_id must be a UUID, not {principal_id!r}") from None
    if canonical != principal_id:
        raise InvalidCommand(f"principal_id must be a lower-case hyphenated UUID ({canonical}), not {principal_id!r}")


def check_profile_id(aggregate_id: str, tenant_id: str, principal_id: str) -> None:
    if not tenant_id:
        raise InvalidCommand("tenant_id is required")
    expected = str(profile_id(tenant_id, principal_id))
    if aggregate_id != expected:
        raise InvalidCommand(
            f"the aggregate id of this principal's profile in tenant {tenant_id} is {expected} "
            f"(uuid5 of '<tenant_id>/<principal_id>'), not {aggregate_id!r}"
        )


def check_display_name(display_name: str) -> None:
    if not display_name or not display_name.strip():
        raise InvalidCommand("display_name is required")
    if len(display_name) > MAX_DISPLAY_NAME:
        raise InvalidCommand(f"display_name must be at most {MAX_DISPLAY_NAME} characters, not {len(display_name)}")
    if display_name != display_name.strip():
        raise InvalidCommand("display_name must not start or end with white space")
    if not all(c.isprintable() for c in display_name):
        raise InvalidCommand("display_name must not contain control characters")


def check_email(email: str) -> None:
    """A practical address check (no quoted local parts, no IP literals). The
    reasons describe the problem without repeating the address."""
    if not email:
        raise InvalidCommand("email is required")
    if len(email) > MAX_EMAIL:
        raise InvalidCommand(f"email must be at most {MAX_EMAIL} characters, not {len(email)}")
    if email.count("@") != 1:
        raise InvalidCommand(f"email must contain exactly one '@', not {email.count('@')}")
    local, _, domain = email.partition("@")
    if not local or len(local) > MAX_EMAIL_LOCAL:
        raise InvalidCommand(f"email must have 1 to {MAX_EMAIL_LOCAL} characters before the '@'")
    if not _LOCAL_PART.fullmatch(local):
        raise InvalidCommand("email has characters that are not allowed before the '@' (letters, digits, .!#$%&'*+/=?^_`{|}~-)")
    if local.startswith(".") or local.endswith(".") or ".." in local:
        raise InvalidCommand("email must not have a leading, trailing or doubled '.' before the '@'")
    labels = domain.split(".")
    if len(labels) < 2:
        raise InvalidCommand("email domain must have at least two labels (name.tld)")
    if not all(len(label) <= MAX_DOMAIN_LABEL and _DOMAIN_LABEL.fullmatch(label) for label in labels):
        raise InvalidCommand(
            f"email domain labels must be 1 to {MAX_DOMAIN_LABEL} letters, digits or inner hyphens, separated by single dots"
        )
    if not _TOP_LEVEL_DOMAIN.fullmatch(labels[-1]):
        raise InvalidCommand("email top-level domain must be letters (or an xn-- name)")


def check_phone(phone: str) -> None:
    """E.164: '+', the country code (never 0) and the number, digits only. An empty
    phone means none."""
    if phone == "":
        return
    if not phone.startswith("+"):
        raise InvalidCommand("phone must be in E.164 form: '+', the country code, then the number")
    digits = phone[1:]
    if not digits.isascii() or not digits.isdigit():
        raise InvalidCommand("phone must have only digits after the '+' (E.164: no spaces, dashes or brackets)")
    if not MIN_PHONE_DIGITS <= len(digits) <= MAX_PHONE_DIGITS:
        raise InvalidCommand(f"phone must have {MIN_PHONE_DIGITS} to {MAX_PHONE_DIGITS} digits (E.164), not {len(digits)}")
    if digits[0] == "0":
        raise InvalidCommand("phone country code must not start with 0 (E.164)")


def check_locale(locale: str, field: str = "locale") -> None:
    if not _LANGUAGE_TAG.fullmatch(locale or ""):
        raise InvalidCommand(f"{field} must be a language tag like en, fr-FR, pt-BR or es-419, not {locale!r}")


@lru_cache(maxsize=1)
def _timezones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def check_timezone(timezone: str) -> None:
    if timezone not in _timezones():
        raise InvalidCommand(f"timezone must be an IANA time zone name like Europe/Paris or UTC, not {timezone!r}")


def check_contact_fields(
    display_name: str | None = None,
    email: str | None = None,
    phone: str | None = None,
    locale: str | None = None,
    timezone: str | None = None,
) -> None:
    if display_name is not None:
        check_display_name(display_name)
    if email is not None:
        check_email(email)
    if phone is not None:
        check_phone(phone)
    if locale is not None:
        check_locale(locale)
    if timezone is not None:
        check_timezone(timezone)


def check_preference_key(key: str) -> None:
    if key not in PREFERENCES:
        shown = key if len(key) <= 64 else key[:64] + "…"
        raise InvalidCommand(f"preference key {shown!r} is not one of {', '.join(sorted(PREFERENCES))}")


def check_preference(key: str, value: str) -> None:
    check_preference_key(key)
    allowed = PREFERENCES[key]
    if allowed is None:
        check_locale(value, field=f"preference {key}")
    elif value not in allowed:
        raise InvalidCommand(f"preference {key} must be one of {', '.join(allowed)}")


def handle(profile: Profile | None, command: Command) -> Profile:
    """The one handler of every user command: returns the profile with its new
    pending events, or raises a Rejected subclass before changing anything."""
    meta = command.meta
    if isinstance(command, CreateProfile):
        check_principal_id(command.principal_id)
        check_profile_id(meta.aggregate_id, meta.tenant_id, command.principal_id)
        if profile is not None:
            raise AggregateAlreadyExists(f"principal {command.principal_id} already has a profile in tenant {meta.tenant_id}")
        check_contact_fields(command.display_name, command.email, command.phone, command.locale, command.timezone)
        return Profile(
            tenant_id=meta.tenant_id,
            principal_id=command.principal_id,
            display_name=command.display_name,
            email=command.email,
            phone=command.phone,
            locale=command.locale,
            timezone=command.timezone,
        )
    if profile is None:
        raise AggregateNotFound(f"profile {meta.aggregate_id} does not exist")
    if isinstance(command, UpdateProfile):
        profile.update({name: getattr(command, name) for name in UPDATABLE})
    elif isinstance(command, SetPreference):
        profile.set_preference(command.key, command.value)
    elif isinstance(command, RemovePreference):
        profile.remove_preference(command.key)
    else:
        raise InvalidCommand(f"the user hub has no handler for {type(command).__name__}")
    return profile
