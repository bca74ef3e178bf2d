"""The dashboard as an operations console, on its real dependencies (the same
processes and app as test_dashboard_operator.py): an operator finds sagas by one
exact id — saga, correlation, message or contact id — in the read store the
saga projector wrote (its migrations included), scoped by the list's other
filters, and bad input is answered with a 400 page naming the parameter."""

from __future__ import annotations

import json
import uuid

import pytest

from hubs.saga.commands import StartSaga
from hubs.tenant.aggregate import PLATFORM_ACTOR
from hubs.tenant.commands import CreateTenant
from infra.command_client import new_meta
from sagas.dashboard.rules import OPERATOR_TENANT
from tests.harness import eventually
from tests.integration import test_dashboard_operator as operator_tests
from tests.integration.test_dashboard_operator import browser, log_in, register, start_waiting_saga, states

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


async def _present(found, n: int) -> bool:
    return len(await found) == n
