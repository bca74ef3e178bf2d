"""The tenant onboarding saga on the real stack: the Saga hub's processor and
projector, the target hubs' processors and the saga driver run as subprocesses;
the driver is SIGKILLed mid-saga, a target hub is down past a deadline, and a
step the App hub refuses is compensated in reverse."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid

import grpc
import pytest

from hubs.saga.commands import StartSaga
from infra.command_client import CommandClient, new_meta
from poseidon import bootstrap
from schemas.protos import saga_pb2, saga_pb2_grpc
from tests.harness import ROOT, Platform, bearer, channel, env_for, eventually, fetch, free_port, mint_token, read_topic

pytestmark = pytest.mark.integration

TARGET_HUBS = ("tenant", "wallet", "config", "app")


class Driver:
    """The saga driver as a subprocess of its own (`poseidon saga-driver`), so it can be SIGKILLed."""

    def __init__(self, platform: Platform):
        self.platform, self.popen, self.port = platform, None, free_port()
        self.log = platform.workdir / "saga-driver.log"

    def start(self) -> None:
        env = env_for(self.platform.settings, POSEIDON_OPS_PORT=str(self.port))
        with open(self.log, "ab") as log:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "poseidon.cli", "saga-driver"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        import urllib.request

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.popen.poll() is None, self.log.read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise TimeoutError(self.log.read_text()[-3000:])

    def kill(self) -> None:
        self.popen.kill()
        self.popen.wait(10)

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.terminate()
            self.popen.wait(15)


@pytest.fixture
async def stack(platform):
    started = [("processor", "saga"), ("projector", "saga")] + [("processor", h) for h in TARGET_HUBS if h != "config"]
    for role, hub in started:
        platform.start(role, hub, wait=False)
    for role, hub in started:
        platform.wait_healthy(f"{hub}-{role}")
    driver = Driver(platform)
    codec = bootstrap.codec(platform.settings)
    async with CommandClient(platform.settings, codec, [bootstrap.hub("saga")]) as client:
        try:
            yield platform, client, driver
        finally:
            driver.stop()


async def start_onboarding(client: CommandClient, tenant: str, **extra) -> str:
    saga_id = str(uuid.uuid4())
    payload = {
        "tenant_id": tenant,
        "name": "Acme",
        "owner_id": "owner-1",
        "currency": "EUR",
        "default_app_id": str(uuid.uuid4()),
        **extra,
    }
    result = await client.send(
        StartSaga(new_meta(saga_id, tenant), saga_type="tenant_onboarding", input_json=json.dumps(payload))
    )
    assert result.accepted, result
    return saga_id


async def saga_row(settings, saga_id: str):
    rows = await fetch(settings, settings.pg_schema("saga"), "SELECT * FROM sagas WHERE saga_id = $1", uuid.UUID(saga_id))
    return rows[0] if rows else None


async def timeline(settings, saga_id: str) -> list[tuple[str, str, str]]:
    rows = await fetch(
        settings,
        settings.pg_schema("saga"),
        "SELECT event_type, step, summary FROM saga_events WHERE saga_id = $1 ORDER BY version",
        uuid.UUID(saga_id),
    )
    return [(r["event_type"], r["step"], r["summary"]) for r in rows]


async def in_state(settings, saga_id: str, *states: str, timeout: float = 60.0):
    async def check():
        row = await saga_row(settings, saga_id)
        return row if row is not None and row["state"] in states else None

    return await eventually(check, timeout=timeout)


async def test_onboarding_survives_a_driver_sigkill_and_a_deadline_that_passed_while_it_was_down(stack):
    platform, client, driver = stack
    s = platform.settings
    driver.start()
    # The Config hub is down: default_config waits for an answer that cannot come in its 3 s.
    saga_id = await start_onboarding(client, "acme", deadlines_s={"default_config": 3})

    async def waiting_on_config():
        row = await saga_row(s, saga_id)
        return row if row and row["current_step"] == "default_config" and row["state"] == "waiting" else None

    await eventually(waiting_on_config, timeout=60)
    driver.kill()
    time.sleep(4)  # the deadline passes while no driver runs
    driver.start()

    async def failed_overdue():
        events = await timeline(s, saga_id)
        return [e for e in events if e[0] == "StepFailed" and e[1] == "default_config"] or None

    # The restarted driver's timer fails the overdue attempt. The Config hub comes back
    # only then: its command waited on config.commands, and an answer that arrives
    # before the timer acts is simply taken (tests/integration/test_saga_process_manager.py).
    overdue = await eventually(failed_overdue, timeout=60)
    assert "deadline" in overdue[0][2], overdue
    platform.start("processor", "config")

    row = await in_state(s, saga_id, "completed", timeout=90)
    events = await timeline(s, saga_id)
    steps_done = [step for kind, step, _ in events if kind == "StepSucceeded"]
    assert steps_done == ["create_tenant", "open_wallet", "default_config", "subscribe_default_app"]
    assert not any(kind.startswith("Compensat") for kind, _, _ in events)
    assert row["error"] == "" and row["deadline_at"] is None
    # Re-sent commands were answered, not re-applied: one tenant, one wallet, one subscription.
    codec = bootstrap.codec(s)
    for hub, event in (("tenant", "TenantCreated"), ("wallet", "WalletOpened"), ("app", "AppSubscribed")):
        names = [codec.decode(r.value).name for r in await read_topic(s, s.topic(f"{hub}.events"))]
        assert sum(n.endswith(f".{event}") for n in names) == 1, (hub, names)


async def test_a_step_the_app_hub_refuses_is_compensated_in_reverse_and_the_saga_ends_compensated(stack):
    platform, client, driver = stack
    s = platform.settings
    platform.start("processor", "config")
    driver.start()
    # The App hub refuses a subscription to an app id that is not a UUID (InvalidCommand) on every attempt.
    saga_id = await start_onboarding(client, "globex", default_app_id="no-such-app")

    row = await in_state(s, saga_id, "compensated", "needs_attention", timeout=90)
    events = await timeline(s, saga_id)
    assert row["state"] == "compensated", events
    failures = [summary for kind, step, summary in events if kind == "StepFailed" and step == "subscribe_default_app"]
    assert len(failures) == 3 and "InvalidCommand" in failures[-1]
    compensated = [step for kind, step, _ in events if kind == "Compensated"]
    assert compensated == ["default_config", "open_wallet", "create_tenant"]
    requested = [summary.split(" ")[1] for kind, _, summary in events if kind == "CompensationRequested"]
    assert requested == ["UnsetConfigValue", "CloseWallet", "ArchiveTenant"]

    # The same timeline over gRPC, scoped by tenant and guarded by role.
    platform.start("grpc", "saga")
    async with channel(s, "saga") as ch:
        sagas = saga_pb2_grpc.SagaQueryStub(ch)
        detail = await sagas.GetSaga(saga_pb2.GetSagaRequest(tenant_id="globex", saga_id=saga_id))
        assert detail.saga.state == "compensated" and [e.event_type for e in detail.timeline] == [e[0] for e in events]
        listed = await sagas.ListSagas(saga_pb2.ListSagasRequest(tenant_id="globex", state="compensated"))
        assert [x.saga_id for x in listed.sagas] == [saga_id]
        with pytest.raises(grpc.aio.AioRpcError) as other_tenant:
            await sagas.GetSaga(saga_pb2.GetSagaRequest(tenant_id="acme", saga_id=saga_id))
        assert other_tenant.value.code() == grpc.StatusCode.NOT_FOUND
    async with channel(s, "saga", bearer(mint_token(s, str(uuid.uuid4())))) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as outsider:
            await saga_pb2_grpc.SagaQueryStub(ch).GetSaga(saga_pb2.GetSagaRequest(tenant_id="globex", saga_id=saga_id))
        assert outsider.value.code() == grpc.StatusCode.PERMISSION_DENIED
