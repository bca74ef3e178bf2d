"""The saga driver's pure helpers: a request event's command_json becomes the
target hub's typed command again (same command id), and a hub's answer becomes
the RecordStepResult fields."""

from __future__ import annotations

import json

from hubs.tenant.commands import CreateTenant
from hubs.tenant.hub import HUB as TENANT_HUB
from infra.command_client import CommandResult
from sagas.driver import command_of, derived_command_id, result_of
from tests.unit.test_saga_aggregate import Story


def test_a_requested_command_is_rebuilt_as_the_target_hubs_command_with_the_events_command_id():
    s = Story()
    request = s.start().events[-1]

    command = command_of(TENANT_HUB, request.command_type, request.command_json)

    assert isinstance(command, CreateTenant)
    assert command.meta.command_id == request.command_id and command.meta.aggregate_id == "acme"
    assert command.meta.issued_at == s.now and command.owner_id == "owner-1"


def test_an_accepted_answer_succeeds_and_a_rejection_fails_naming_its_rule():
    accepted = CommandResult("c", True, 3, "", "", ("e",), ("poseidon.wallet.WalletOpened",), True)
    rejected = CommandResult("c", False, 0, "InvalidCommand", "app_id must be a UUID", (), (), False)

    ok, detail, body = result_of(accepted)
    assert (
        ok
        and detail == "accepted at version 3 (duplicate)"
        and json.loads(body)["event_types"] == ["poseidon.wallet.WalletOpened"]
    )
    ok, detail, body = result_of(rejected)
    assert not ok and detail == "InvalidCommand: app_id must be a UUID" and json.loads(body)["rejection"] == "InvalidCommand"


def test_the_drivers_own_command_ids_are_deterministic_per_saga_step_and_attempt():
    assert derived_command_id("s", "open_wallet", "action", 1, "result") == derived_command_id(
        "s", "open_wallet", "action", 1, "result"
    )
    assert derived_command_id("s", "open_wallet", "action", 1, "result") != derived_command_id(
        "s", "open_wallet", "action", 2, "result"
    )
