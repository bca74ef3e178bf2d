"""User commands: create and change a principal's profile in one tenant, and set
or remove its preferences. The aggregate id of every command is the profile id,
`hubs.user.aggregate.profile_id(tenant_id, principal_id)`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from schemas.contracts import Command


@dataclass(frozen=True)
class UserCommand(Command):
    hub: ClassVar[str] = "user"


@dataclass(frozen=True)
class CreateProfile(UserCommand):
    principal_id: str
    display_name: str
    email: str
    phone: str = ""
    locale: str = "en"
    timezone: str = "UTC"


@dataclass(frozen=True)
class UpdateProfile(UserCommand):
    """Only the fields given (not None) change; `phone=""` removes the phone."""

    display_name: str | None = None
    email: str | None = None
    phone: str | None = None
    locale: str | None = None
    timezone: str | None = None


@dataclass(frozen=True)
class SetPreference(UserCommand):
    key: str
    value: str


@dataclass(frozen=True)
class RemovePreference(UserCommand):
    key: str


COMMANDS = (CreateProfile, UpdateProfile, SetPreference, RemovePreference)
