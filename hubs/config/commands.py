"""Config commands: set or unset one key in one scope. The aggregate id is the
entry id derived from (scope_kind, scope_id, key) — see `entry_id`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from schemas.contracts import Command


@dataclass(frozen=True)
class ConfigCommand(Command):
    hub: ClassVar[str] = "config"


@dataclass(frozen=True)
class SetConfigValue(ConfigCommand):
    scope_kind: str
    scope_id: str
    key: str
    value_json: str


@dataclass(frozen=True)
class UnsetConfigValue(ConfigCommand):
    scope_kind: str
    scope_id: str
    key: str


COMMANDS = (SetConfigValue, UnsetConfigValue)
