"""The shared lifecycle restarts a role when our own platform is away and only
then; a stopped process answers nothing on its ops port."""

from __future__ import annotations

import asyncio
import socket

import aiohttp
import asyncpg
import pytest
from aiokafka.errors import KafkaConnectionError

from hubs.message.router import is_transient as router_retries
from infra.command_client import CommandTimeout
from infra.ops import OpsServer
from infra.outage import PLATFORM_OUTAGE
from infra.service import serve_until_stopped
from sagas.driver import is_transient as driver_retries

# What a PostgreSQL restart under load raised in a projector (chaos seed 290847):
# the connection's server went away mid-statement, the rollback found it busy.
BROKEN_CONNECTION = asyncpg.InternalClientError("cannot switch to state 15; another operation (2) is in progress")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _serve(failures: list[BaseException], transient=PLATFORM_OUTAGE) -> tuple[int, list[bool]]:
    """Serve a run that raises each failure in turn, then stops the process; returns
    how many lifetimes ran and whether the ops port answered during the last one."""
    port, ops_up, runs = _port(), [], []

    async def run() -> None:
        runs.append(1)
        if len(runs) <= len(failures):
            raise failures[len(runs) - 1]
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/healthz") as answer:
            ops_up.append(answer.status == 200)
        asyncio.current_task().cancel()
        await asyncio.sleep(5)

    await serve_until_stopped("test", run, OpsServer("127.0.0.1", port, "test"), transient)
    return len(runs), ops_up


@pytest.mark.parametrize(
    "away",
    [
        BROKEN_CONNECTION,
        asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        asyncpg.CannotConnectNowError("the database system is shutting down"),
        KafkaConnectionError("broker away"),
        ConnectionRefusedError(111, "refused"),
        CommandTimeout("no result"),
    ],
    ids=lambda e: type(e).__name__,
)
async def test_a_role_whose_platform_went_away_restarts_and_serves_again(away):
    lifetimes, ops_up = await _serve([away])
    assert lifetimes == 2
    assert ops_up == [True]


async def test_a_cancellation_the_process_was_not_sent_restarts_it_like_an_outage():
    # What a broker stopping mid-commit raised in a processor (chaos seed 146687):
    # aiokafka cancelled the pending send_offsets_to_transaction as its sender died.
    lifetimes, ops_up = await _serve([asyncio.CancelledError()])
    assert lifetimes == 2
    assert ops_up == [True]


async def test_a_bug_is_not_restarted_and_the_ops_port_closes():
    port = _port()

    async def run() -> None:
        raise ValueError("a bug")

    with pytest.raises(ValueError, match="a bug"):
        await serve_until_stopped("test", run, OpsServer("127.0.0.1", port, "test"), PLATFORM_OUTAGE)
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.parametrize("retries", [router_retries, driver_retries], ids=["router", "saga driver"])
def test_the_keyed_roles_wait_out_a_broken_store_connection_instead_of_dead_lettering(retries):
    assert retries(BROKEN_CONNECTION)
    assert not retries(ValueError("a bug"))


async def test_liveness_answers_while_readiness_reports_a_dependency_away():
    port, reachable = _port(), {"postgres": False}
    ops = OpsServer("127.0.0.1", port, "test", {"postgres": lambda: reachable["postgres"]})
    await ops.start()
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/livez") as live, http.get(f"http://127.0.0.1:{port}/readyz") as ready:
                assert (live.status, ready.status) == (200, 503)
                assert (await ready.json())["checks"] == {"postgres": False}
            reachable["postgres"] = True
            async with http.get(f"http://127.0.0.1:{port}/readyz") as ready, http.get(f"http://127.0.0.1:{port}/metrics") as m:
                assert ready.status == 200 and "poseidon_build_info{" in await m.text()
    finally:
        await ops.stop()
