"""POSEIDON_HTTP_TLS: the public HTTP servers (webhook ingress, REST gateway, operator
dashboard) serve HTTPS with the installation's certificate, which clients verify
against its CA; plain HTTP on the same port gets no answer."""

from __future__ import annotations

import asyncio
import ssl

import aiohttp
import pytest

from infra import tls
from tests.harness import free_port

pytestmark = pytest.mark.integration

ROLES = {
    "ingress": ("POSEIDON_INGRESS_PORT", "/healthz"),
    "gateway": ("POSEIDON_GATEWAY_PORT", "/openapi.json"),
    "dashboard": ("POSEIDON_DASHBOARD_PORT", "/healthz"),
}


@pytest.fixture
async def served(platform):
    """Each public HTTP role with HTTPS on, at its own port (the gateway waits for the Identity gRPC server)."""
    platform.start("grpc", "identity")
    ports = {}
    for role, (variable, _) in ROLES.items():
        used = [*platform.settings.grpc_ports.values(), *(p.ops_port for p in platform.procs.values()), *ports.values()]
        ports[role] = free_port(used)
        platform.launch(role, role, env={variable: str(ports[role]), "POSEIDON_HTTP_TLS": "true"}, wait=False)
    trusted = ssl.create_default_context(cafile=str(tls.files(platform.settings).ca))
    async with aiohttp.ClientSession() as http:
        for role, (_, path) in ROLES.items():
            await answering(http, f"https://127.0.0.1:{ports[role]}{path}", trusted, platform.procs[role], platform, role)
    return ports


async def answering(http, url: str, context, proc, platform, name: str, timeout: float = 90) -> None:
    """Until `url` answers 200 over verified TLS (the dashboard has no ops port: its page is its health)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        assert proc.popen.poll() is None, f"{name} exited:\n{platform.tail(name)}"
        try:
            async with http.get(url, ssl=context) as r:
                if r.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.3)
    raise TimeoutError(f"{name} not answering {url}:\n{platform.tail(name)}")


async def test_every_public_http_server_answers_https_verified_against_the_ca_and_nothing_in_plain_http(platform, served):
    trusted = ssl.create_default_context(cafile=str(tls.files(platform.settings).ca))
    async with aiohttp.ClientSession() as http:
        for role, (_, path) in ROLES.items():
            port = served[role]
            async with http.get(f"https://127.0.0.1:{port}{path}", ssl=trusted) as r:
                assert r.status == 200, (role, r.status)
            with pytest.raises(aiohttp.ClientError):  # the certificate does not verify without the CA
                async with http.get(f"https://127.0.0.1:{port}{path}", ssl=ssl.create_default_context()) as r:
                    pass
            with pytest.raises(aiohttp.ClientError):  # a plain HTTP request gets no HTTP answer
                async with http.get(f"http://127.0.0.1:{port}{path}") as r:
                    pass
