"""The Facebook spoke's rich replies and typing indicator against the Send API stand-in
(no Kafka): quick replies and templates go out as Graph takes them, what exceeds its
limits is refused with Graph's (#100) errors, and the typing indicator is best
effort — shown when it can be, never raising, never waiting past its timeout,
skipped while the tenant's breaker is open or when the decision is old."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from infra.spoke import PermanentError
from spokes.facebook.actions import send_reply
from spokes.facebook.client import FacebookClient
from spokes.facebook.typing_indicator import FRESH_S, TIMEOUT_S, show_typing
from tests.integration.test_facebook_client import PAGE, PSID, TOKEN_A, spoke_context
from tests.standins.facebook import RunningFacebook, running_facebook

CHOICE = {
    "type": "choice",
    "text": "Which size?",
    "options": [{"label": "Small", "value": "S"}, {"label": "Large", "value": "L"}],
}


@pytest.fixture
async def facebook() -> AsyncIterator[RunningFacebook]:
    async with running_facebook() as running:
        running.state.add_page(PAGE, TOKEN_A)
        running.state.user_wrote(PSID)
        yield running


@pytest.fixture
async def ctx(facebook):
    context = spoke_context(facebook.url, facebook_page_token=TOKEN_A)
    yield context
    await context.http.aclose()


def routed(tenant: str, *, age_s: float = 0.0) -> dict:
    occurred = datetime.now(UTC) - timedelta(seconds=age_s)
    return {
        "envelope": {"tenant_id": tenant, "occurred_at": occurred, "correlation_id": "c", "event_id": "e"},
        "channel": "facebook", "spoke": "botpress", "channel_account_id": PAGE, "contact_id": PSID,
    }  # fmt: skip


def tenant() -> str:
    return f"tenant-{uuid.uuid4().hex[:8]}"


async def test_the_typing_indicator_is_a_sender_action_the_send_api_records(ctx, facebook):
    outcome = await show_typing(ctx, routed(tenant()))
    assert outcome.succeeded and outcome.operation == "typing_on"
    assert [(psid, action) for psid, action, _ in facebook.state.sender_actions] == [(PSID, "typing_on")]
    assert facebook.state.sent_to(PSID) == []  # not a message


async def test_a_slow_or_failing_send_api_costs_the_typing_indicator_its_timeout_at_most_and_never_raises(ctx, facebook):
    facebook.state.fail("slow", count=1, delay_s=TIMEOUT_S + 3, sender_actions=True)
    started = time.monotonic()
    slow = await show_typing(ctx, routed(tenant()))
    assert not slow.succeeded and slow.error_code == "TimeoutError"
    assert time.monotonic() - started < TIMEOUT_S + 1
    facebook.state.fail("500", count=1, sender_actions=True)
    failed = await show_typing(ctx, routed(tenant()))
    assert not failed.succeeded and "best effort" in failed.detail


async def test_a_faults_default_leaves_sender_actions_alone(ctx, facebook):
    facebook.state.fail("500", count=1)
    assert (await show_typing(ctx, routed(tenant()))).succeeded
    assert len(facebook.state.faults) == 1  # still there for the next message


async def test_no_typing_indicator_while_the_tenants_breaker_is_open_or_for_an_old_decision(ctx, facebook):
    who = tenant()
    ctx.breaker(who).open()
    skipped = await show_typing(ctx, routed(who))
    assert skipped.succeeded and "breaker open" in skipped.detail
    late = await show_typing(ctx, routed(tenant(), age_s=FRESH_S + 5))
    assert late.succeeded and "too old" in late.detail
    assert facebook.state.sender_actions == [] and facebook.state.message_requests() == []


async def test_a_choice_goes_out_as_quick_replies_and_what_messenger_cannot_show_as_text_with_the_reason(ctx, facebook):
    now = datetime.now(UTC)
    common = {"tenant_id": tenant(), "page_id": PAGE, "psid": PSID, "last_inbound_at": now, "now": now}
    rich = await send_reply(ctx, text="Which size?\n- Small\n- Large", content=json.dumps(CHOICE), **common)
    assert rich.succeeded and "degraded" not in rich.data
    too_many = {**CHOICE, "options": [{"label": f"o{i}", "value": f"v{i}"} for i in range(14)]}
    plain = await send_reply(ctx, text="the options as text", content=json.dumps(too_many), **common)
    assert plain.succeeded and "14 options" in plain.data["degraded"]
    sent = facebook.state.sent_to(PSID)
    assert [q["payload"] for q in sent[0].message["quick_replies"]] == ["S", "L"]
    assert sent[1].message == {"text": "the options as text"}


@pytest.mark.parametrize(
    ("message", "error"),
    [
        ({"text": "pick", "quick_replies": [{"content_type": "text", "title": f"o{i}", "payload": "p"} for i in range(14)]},
         "(#100) Length of param message[quick_replies] must be less than or equal to 13"),
        ({"text": "pick", "quick_replies": [{"content_type": "text", "title": "t" * 21, "payload": "p"}]},
         "(#100) Length of param message[quick_replies][0][title] must be less than or equal to 20"),
        ({"attachment": {"type": "template", "payload": {"template_type": "generic", "elements": [{"title": "t"}] * 11}}},
         "(#100) Length of param message[attachment][payload][elements] must be less than or equal to 10"),
        ({"attachment": {"type": "template", "payload": {"template_type": "generic", "elements": [
            {"title": "t", "buttons": [{"type": "postback", "title": "b", "payload": "p"}] * 4}]}}},
         "(#100) Length of param message[attachment][payload][elements][0][buttons] must be less than or equal to 3"),
        ({"attachment": {"type": "template", "payload": {"template_type": "generic", "elements": [{"title": "t" * 81}]}}},
         "(#100) Length of param message[attachment][payload][elements][0][title] must be less than or equal to 80"),
    ],
)  # fmt: skip
async def test_the_send_api_stand_in_refuses_what_exceeds_graphs_limits_with_its_100_errors(ctx, facebook, message, error):
    body = {"recipient": {"id": PSID}, "messaging_type": "RESPONSE", "message": message}
    with pytest.raises(PermanentError) as refused:
        await FacebookClient.for_context(ctx).send(TOKEN_A, body)
    assert refused.value.code == "invalid_parameter" and error in refused.value.reason
    assert facebook.state.sent_to(PSID) == []
