"""The dashboard as an operations console, on its real dependencies (the same
processes and app as test_dashboard_operator.py): an operator finds sagas by one
exact id — saga, correlation, message or contact id — in the read store the
saga projector wrote (its migrations included), scoped by the list's other
filters, and bad input is answered with a 400 page naming the parameter; and
reads per-type statistics (counts per state, p50/p95 durations of finished
sagas computed by PostgreSQL, top failure reasons) over a time window; and
resets a saga to a chosen step with a reason, which the Saga hub records as the
operator's act and runs through the real hubs from there."""

from __future__ import annotations

import json
import re
import uuid
from urllib.parse import unquote

import pytest

from hubs.saga.commands import StartSaga
from hubs.tenant.aggregate import PLATFORM_ACTOR
from hubs.tenant.commands import CreateTenant
from infra.command_client import new_meta
from sagas.dashboard.rules import OPERATOR_TENANT
from tests.harness import eventually, fetch
from tests.integration import test_dashboard_operator as operator_tests
from tests.integration.test_dashboard_operator import (
    browser,
    log_in,
    post_form,
    register,
    saga_events,
    start_waiting_saga,
    states,
    waiting_steps,
)

pytestmark = pytest.mark.integration
dashboard = operator_tests.dashboard  # the same processes and app as the operator tests


async def operator_session(settings, client, url):
    """A browser logged in as an operator (the membership is read live: allow the projector its moment)."""
    olga = await register(settings, "olga@platform.example")
    team = CreateTenant(new_meta(OPERATOR_TENANT, OPERATOR_TENANT, actor=PLATFORM_ACTOR), "Operators", olga)
    made = await client.send(team, timeout=90)
    assert made.accepted, made.reason
    session = browser(url)

    async def logged_in():
        async with await log_in(session, url, "olga@platform.example") as reply:
            return reply.status == 303

    await eventually(logged_in, timeout=60)
    return session


async def start_inbound_saga(client, tenant: str, message_id: str, contact_id: str, correlation_id: str) -> str:
    """An inbound-message saga as the Message hub starts it; no Wallet hub runs, so it waits on reserve_funds."""
    saga_id = str(uuid.uuid4())
    body = {
        "tenant_id": tenant, "wallet_id": str(uuid.uuid4()), "charge_minor": 5, "conversation_id": str(uuid.uuid4()),
        "message_id": message_id, "contact_id": contact_id, "channel": "facebook", "channel_account_id": "page-1",
        "routed_to": "botpress", "rule": "default", "text": "hello", "attachments": [], "received_at": "",
    }  # fmt: skip
    meta = new_meta(saga_id, tenant, actor="test", correlation_id=correlation_id)
    result = await client.send(StartSaga(meta, "inbound_message", json.dumps(body)), timeout=90)
    assert result.accepted, result.reason
    return saga_id


async def page(session, url: str) -> tuple[int, str]:
    async with session.get(url) as reply:
        return reply.status, await reply.text()


async def test_an_operator_finds_sagas_by_saga_correlation_message_or_contact_id_exactly(dashboard):
    settings, client, url = dashboard
    session = await operator_session(settings, client, url)
    async with session:
        tenant = f"t-{uuid.uuid4().hex[:8]}"
        message_id, contact_id, correlation = f"m_{uuid.uuid4().hex}", f"{uuid.uuid4().int % 10**16}", f"corr-{uuid.uuid4()}"
        inbound = await start_inbound_saga(client, tenant, message_id, contact_id, correlation)
        same_contact = await start_inbound_saga(client, tenant, f"m_{uuid.uuid4().hex}", contact_id, f"corr-{uuid.uuid4()}")
        onboarding = await start_waiting_saga(settings, client)
        await eventually(lambda: _present(states(settings, [inbound, same_contact, onboarding]), 3), timeout=60)

        status, html = await page(session, f"{url}/?q={message_id}")
        assert status == 200 and inbound in html and same_contact not in html and onboarding not in html
        assert "(1 sagas)" in html and f'value="{message_id}"' in html

        status, html = await page(session, f"{url}/?q=%20{contact_id}%20")  # trimmed
        assert status == 200 and inbound in html and same_contact in html and onboarding not in html

        status, html = await page(session, f"{url}/?q={correlation}")
        assert status == 200 and inbound in html and same_contact not in html

        status, html = await page(session, f"{url}/?q={onboarding.upper()}")  # a saga id in any spelling
        assert status == 200 and onboarding in html and inbound not in html

        # Exact matches only, and within the list's other filters.
        status, html = await page(session, f"{url}/?q={message_id[:-1]}")
        assert status == 200 and inbound not in html and "exact matches only" in html
        status, html = await page(session, f"{url}/?q={contact_id}&tenant=someone-else")
        assert status == 200 and inbound not in html and "under these filters" in html
        status, html = await page(session, f"{url}/?q={contact_id}&type=inbound_message&state=waiting")
        assert status == 200 and inbound in html and same_contact in html

        # Bad input: a page that says what is wrong, never a 500.
        for bad in ("two%20ids", "x" * 201, "a%00b", "%E2%80%AEx"):
            status, html = await page(session, f"{url}/?q={bad}")
            assert status in (200, 400), (bad, status)
            if status == 400:
                assert "q (the id to find)" in html, bad


async def test_an_operator_reads_per_type_counts_durations_and_failure_reasons_over_a_window(dashboard):
    settings, client, url = dashboard
    session = await operator_session(settings, client, url)
    async with session:
        tenant = f"t-{uuid.uuid4().hex[:8]}"
        waiting = await start_inbound_saga(client, tenant, "m-1", "c-1", f"corr-{uuid.uuid4()}")
        aborted = await start_inbound_saga(client, tenant, "m-2", "c-1", f"corr-{uuid.uuid4()}")
        onboarding = await start_waiting_saga(settings, client)
        await eventually(lambda: _in_states(settings, {waiting: "waiting", aborted: "waiting", onboarding: "waiting"}))
        where = await post_form(session, f"{url}/sagas/{aborted}/actions", {"action": "abort", "reason": "test abort"})
        assert "abort accepted" in unquote(where), where
        # A second onboarding of the same tenant: CreateTenant is refused, the saga ends compensated with that error.
        _, created = await _onboarding_tenant(settings, onboarding)
        refused = await start_onboarding(client, created)
        await eventually(lambda: _in_states(settings, {aborted: "aborted", refused: "compensated"}), timeout=90)

        status, html = await page(session, f"{url}/stats?window=1h")
        assert status == 200
        inbound = _section(html, "inbound_message")
        assert _stat(inbound, "waiting") == 1 and _stat(inbound, "aborted") == 1 and _stat(inbound, "running") == 0
        assert re.search(r'<tr data-finished="aborted"><td>aborted</td><td>1</td><td>[0-9.]+ (ms|s)</td>', inbound), inbound
        assert "no errors" in inbound
        onboard = _section(html, "tenant_onboarding")
        assert _stat(onboard, "waiting") == 1 and _stat(onboard, "compensated") == 1
        assert '<tr data-finished="compensated"><td>compensated</td><td>1</td>' in onboard
        assert re.search(r"<tr><td>1</td><td class=\"summary\">create_tenant: [^<]*already exists", onboard), onboard

        # The window bounds what is counted; a window that cannot be read is refused by name.
        async def none_in_the_last_second():
            status, html = await page(session, f"{url}/stats?window=1s")
            return status == 200 and "No saga started in the window." in html

        assert await eventually(none_in_the_last_second, timeout=10)
        for bad in ("31d", "forever", "0s"):
            status, html = await page(session, f"{url}/stats?window={bad}")
            assert status == 400 and "window must" in html, bad


async def test_an_operator_resets_a_saga_to_a_done_step_with_a_reason_and_it_runs_again_from_there(dashboard):
    settings, client, url = dashboard
    session = await operator_session(settings, client, url)
    async with session:
        saga = await start_waiting_saga(settings, client)  # create_tenant done; waits on open_wallet (no Wallet hub)
        await eventually(lambda: _in_steps(settings, {saga: "open_wallet"}), timeout=60)
        status, html = await page(session, f"{url}/sagas/{saga}")
        form = re.search(r'<form[^>]*id="action-reset">.*?</form>', html, re.S)
        assert status == 200 and form, html
        assert re.findall(r'<option value="([^"]+)"', form[0]) == ["create_tenant", "open_wallet"]

        where = await post_form(session, f"{url}/sagas/{saga}/actions", {"action": "reset", "reason": "no step"})
        assert "choose the step to reset to" in unquote(where), where
        where = await post_form(
            session, f"{url}/sagas/{saga}/actions", {"action": "reset", "step": "create_tenant", "reason": "re-run onboarding"}
        )
        assert "reset accepted" in unquote(where), where

        # Run again from create_tenant: the Tenant hub refuses a second CreateTenant (the tenant exists), on
        # three new attempts (new command ids, each answer read); then what the first run did is compensated.
        await eventually(lambda: _in_states(settings, {saga: "compensated"}), timeout=90)
        rows = await saga_events(settings, saga)
        acted = [r for r in rows if r["event_type"] == "OperatorActed"]
        assert len(acted) == 1 and acted[0]["step"] == "create_tenant" and acted[0]["actor"] != "test"
        assert "chose reset: re-run onboarding" in acted[0]["summary"]
        after = rows[rows.index(acted[0]) + 1 :]
        attempts = [
            (r["event_type"], r["step"], json.loads(r["payload_json"])["attempt"])
            for r in after
            if "attempt" in r["payload_json"]
        ]
        assert attempts == [
            ("StepRequested", "create_tenant", 2), ("StepFailed", "create_tenant", 2),
            ("StepRequested", "create_tenant", 3), ("StepFailed", "create_tenant", 3),
            ("StepRequested", "create_tenant", 4), ("StepFailed", "create_tenant", 4),
            ("CompensationRequested", "create_tenant", 1), ("Compensated", "create_tenant", 1),
        ]  # fmt: skip
        assert after[-1]["event_type"] == "SagaAborted"

        status, html = await page(session, f"{url}/sagas/{saga}")
        assert "re-run onboarding" in html and 'id="action-reset"' not in html  # finished: no reset offered
        where = await post_form(
            session, f"{url}/sagas/{saga}/actions", {"action": "reset", "step": "create_tenant", "reason": "again"}
        )
        assert "reset refused: SagaFinished" in unquote(where), where


async def _in_steps(settings, wanted: dict[str, str]) -> bool:
    return await waiting_steps(settings, list(wanted)) == wanted


async def start_onboarding(client, tenant: str) -> str:
    saga_id = str(uuid.uuid4())
    body = {"tenant_id": tenant, "name": "Again Ltd", "owner_id": "ann", "currency": "EUR", "default_app_id": "app-1"}
    result = await client.send(StartSaga(new_meta(saga_id, tenant, actor="test"), "tenant_onboarding", json.dumps(body)), 90)
    assert result.accepted, result.reason
    return saga_id


async def _onboarding_tenant(settings, saga_id: str) -> tuple[str, str]:
    rows = await fetch(
        settings, settings.pg_schema("saga"), "SELECT saga_id::text, tenant_id FROM sagas WHERE saga_id = $1::uuid", saga_id
    )
    return rows[0]["saga_id"], rows[0]["tenant_id"]


async def _in_states(settings, wanted: dict[str, str]) -> bool:
    return await states(settings, list(wanted)) == wanted


def _section(html: str, saga_type: str) -> str:
    found = re.search(rf'<section class="card stats" id="stats-{saga_type}".*?</section>', html, re.S)
    assert found, html
    return found[0]


def _stat(section: str, state: str) -> int:
    return int(re.search(rf'data-stat="{state}">(\d+)<', section)[1])


async def _present(found, n: int) -> bool:
    return len(await found) == n
