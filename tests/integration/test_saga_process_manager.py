"""The Saga hub as a process manager (hubs/saga/dispatch.py), against real Kafka
and PostgreSQL: its processor sends each step's command in the transaction that
records it and reads the answers the hubs send back to `saga.commands` — a saga
runs to the end with no saga driver at all; a command whose hub is down waits on
its topic and is answered when the hub is back; and sagas in flight across the
upgrade (requests an older processor recorded without sending) are finished by
the driver, once."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from hubs.saga.hub import saga_hub
from infra.hub import DISPATCHED
from infra.processor import AggregateProcessor
from poseidon import bootstrap
from sagas.registry import DEFINITIONS
from tests.harness import eventually, read_topic
from tests.integration.test_saga_onboarding import TARGET_HUBS, in_state, start_onboarding, timeline

pytestmark = pytest.mark.integration

STEPS = ["create_tenant", "open_wallet", "default_config", "subscribe_default_app"]


def dispatched(record) -> bool:
    return any(name == DISPATCHED for name, _ in record.headers or ())


async def requests_on_saga_events(settings) -> list[tuple[str, bool]]:
    """(step, dispatched header) of every StepRequested in saga.events, in order."""
    codec = bootstrap.codec(settings)
    found = []
    for record in await read_topic(settings, settings.topic("saga.events")):
        decoded = codec.decode(record.value)
        if decoded.name.endswith(".StepRequested"):
            found.append((decoded.record["step"], dispatched(record)))
    return found


async def events_named(settings, hub: str, event: str) -> int:
    codec = bootstrap.codec(settings)
    return sum(
        codec.decode(r.value).name.endswith(f".{event}") for r in await read_topic(settings, settings.topic(f"{hub}.events"))
    )


@pytest.fixture
async def hubs_up(platform):
    """The saga processor and projector and every target hub's processor; no saga driver."""
    started = [("processor", "saga"), ("projector", "saga"), *(("processor", h) for h in TARGET_HUBS)]
    for role, hub in started:
        platform.start(role, hub, wait=False)
    for role, hub in started:
        platform.wait_healthy(f"{hub}-{role}")
    from infra.command_client import CommandClient

    async with CommandClient(platform.settings, bootstrap.codec(platform.settings), [bootstrap.hub("saga")]) as client:
        yield platform, client


async def test_a_saga_runs_to_the_end_without_any_saga_driver(hubs_up):
    platform, client = hubs_up
    s = platform.settings
    saga_id = await start_onboarding(client, "acme")

    await in_state(s, saga_id, "completed", timeout=60)
    events = await timeline(s, saga_id)
    assert [step for kind, step, _ in events if kind == "StepSucceeded"] == STEPS
    # Every request went out in the transaction that recorded it, once.
    assert await requests_on_saga_events(s) == [(step, True) for step in STEPS]
    for hub, event in (("tenant", "TenantCreated"), ("wallet", "WalletOpened"), ("app", "AppSubscribed")):
        assert await events_named(s, hub, event) == 1, hub


async def test_a_command_whose_hub_is_down_waits_on_its_topic_and_is_answered_when_the_hub_is_back(hubs_up):
    platform, client = hubs_up
    s = platform.settings
    platform.kill("config-processor")
    # Past its deadline before the Config hub is back — but no timer runs (no driver):
    # the command waits on config.commands and its late answer is taken.
    saga_id = await start_onboarding(client, "globex", deadlines_s={"default_config": 2})

    async def waiting_on_config():
        events = await timeline(s, saga_id)
        return events if any(kind == "StepRequested" and step == "default_config" for kind, step, _ in events) else None

    await eventually(waiting_on_config, timeout=60)
    await asyncio.sleep(3)
    platform.restart("config-processor")

    await in_state(s, saga_id, "completed", timeout=60)
    events = await timeline(s, saga_id)
    assert [step for kind, step, _ in events if kind == "StepSucceeded"] == STEPS
    assert not [e for e in events if e[0] == "StepFailed"], events
    assert await events_named(s, "config", "ConfigValueSet") == 1


async def test_a_saga_in_flight_across_the_upgrade_is_finished_by_the_driver_once(platform):
    """An older processor (no outbox: `saga_hub` without hubs or spokes) records the
    first request without sending it; after the upgrade the driver sends that one,
    and the new processor sends every later one itself."""
    s = platform.settings
    for hub in TARGET_HUBS:
        platform.start("processor", hub, wait=False)
    platform.start("projector", "saga", wait=False)
    for hub in TARGET_HUBS:
        platform.wait_healthy(f"{hub}-processor")
    platform.wait_healthy("saga-projector")
    from infra.command_client import CommandClient

    codec = bootstrap.codec(s)
    old = AggregateProcessor(saga_hub(DEFINITIONS), s, codec)
    running = asyncio.create_task(old.lifetime())
    async with CommandClient(s, codec, [bootstrap.hub("saga")]) as client:
        saga_id = await start_onboarding(client, "initech")
        assert await requests_on_saga_events(s) == [("create_tenant", False)]
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        time.sleep(1)

        platform.start("processor", "saga")
        platform.launch("saga-driver", "saga-driver")
        await in_state(s, saga_id, "completed", timeout=90)

    events = await timeline(s, saga_id)
    assert [step for kind, step, _ in events if kind == "StepSucceeded"] == STEPS
    assert await requests_on_saga_events(s) == [("create_tenant", False), *((step, True) for step in STEPS[1:])]
    for hub, event in (("tenant", "TenantCreated"), ("wallet", "WalletOpened"), ("app", "AppSubscribed")):
        assert await events_named(s, hub, event) == 1, hub
