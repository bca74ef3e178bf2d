"""Several roles in one process (`poseidon together`, the small layout of `make
run`): the Wallet hub's processor, projector and gRPC server run in one process
and carry a command to its gRPC answer; each role answers health on its own ops
port; the process's metrics are served once; SIGTERM stops every role and the
process exits cleanly; a spec that names no role is refused before anything starts."""

from __future__ import annotations

import asyncio
import signal
import urllib.request
import uuid

import pytest

from hubs.wallet.commands import CreditFunds, OpenWallet
from infra.command_client import CommandClient, new_meta
from poseidon import bootstrap
from tests.harness import free_port
from tests.integration.test_wallet_slice import TENANT, balance_when_version

pytestmark = pytest.mark.integration

SPECS = ("processor:wallet", "projector:wallet", "grpc:wallet")


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


async def test_a_processor_projector_and_grpc_server_in_one_process_carry_a_command_to_its_answer(platform):
    proc = platform.launch("wallet-together", "together", *SPECS, wait=False)
    platform.wait_healthy("wallet-together", 90)
    ports = [proc.ops_port + n for n in range(len(SPECS))]
    for port in ports:  # the processor's port answered above; the projector's and the gRPC server's follow
        for _ in range(300):
            if _get(port, "/readyz")[0] == 200:
                break
            await asyncio.sleep(0.2)
    health = [_get(port, "/readyz") for port in ports]
    assert [status for status, _ in health] == [200, 200, 200], health
    assert [body.split('"process": "')[1].split('"')[0] for _, body in health] == [
        "wallet-processor", "wallet-projector", "wallet-grpc",
    ]  # fmt: skip

    wallet_id = str(uuid.uuid4())
    async with CommandClient(platform.settings, bootstrap.codec(platform.settings), [bootstrap.hub("wallet")]) as client:
        assert (await client.send(OpenWallet(new_meta(wallet_id, TENANT), currency="EUR"))).accepted
        assert (await client.send(CreditFunds(new_meta(wallet_id, TENANT), amount=250, reference="pay-1"))).accepted
    reply = await balance_when_version(platform.settings, wallet_id, 2)
    assert (reply.balance, reply.currency) == (250, "EUR")

    # One registry, served once: the first role's port has every role's metrics, the others point to it.
    status, metrics = _get(ports[0], "/metrics")
    assert status == 200 and "poseidon_build_info" in metrics and "poseidon_grpc" in metrics, metrics[:300]
    for port in ports[1:]:
        status, other = _get(port, "/metrics")
        assert status == 200 and other.strip() == f"# this process's metrics are served on its ops port {ports[0]}"

    proc.popen.send_signal(signal.SIGTERM)
    assert proc.popen.wait(30) == 0
    log = platform.tail("wallet-together", 200)
    for stopped in ("wallet-processor stopped", "projector stopped", "gRPC stopping"):
        assert stopped in log, log


async def test_every_role_stops_on_sigterm_even_one_that_only_serves_pages(platform):
    # The dashboard alone relied on SIGTERM's default action; among other roles it must stop on its own.
    env = {"POSEIDON_DASHBOARD_PORT": str(free_port([p.ops_port for p in platform.procs.values()]))}
    proc = platform.launch("pages-together", "together", "router", "dashboard", env=env, wait=False)
    platform.wait_healthy("pages-together", 90)
    proc.popen.send_signal(signal.SIGTERM)
    assert proc.popen.wait(30) == 0
    log = platform.tail("pages-together", 200)
    assert "dashboard stopping" in log and "router stopped" in log, log


def test_a_spec_that_names_no_role_is_refused_before_anything_starts(platform):
    done = platform.run_cli("together", "processor:wallet", "processor:nowhere", timeout=60)
    assert done.returncode == 2 and "no hub 'nowhere'" in done.stderr, done.stderr
    done = platform.run_cli("together", timeout=60)
    assert done.returncode == 2 and "at least one role" in done.stderr
