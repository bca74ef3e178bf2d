"""gRPC over TLS (infra/tls.py) with a real server on loopback: a client verifying
against the installation's CA is served; a plaintext client, or one trusting
another CA, is not; under mutual TLS a client without the CA's certificate is
refused; a missing certificate is a SettingsError naming the fix."""

from __future__ import annotations

import ssl

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from base.settings import Settings, SettingsError
from infra import tls
from tests.harness import free_port


async def _serve(settings: Settings) -> tuple[grpc.aio.Server, str]:
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    target = f"127.0.0.1:{free_port()}"
    credentials = tls.server_credentials(settings)
    assert (server.add_secure_port(target, credentials) if credentials else server.add_insecure_port(target)) != 0
    await server.start()
    return server, target


async def _check(channel: grpc.aio.Channel) -> int:
    async with channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=3)
        return reply.status


@pytest.fixture
def dev(tmp_path) -> Settings:
    settings = Settings(state_dir=str(tmp_path / "state"))
    assert tls.init_dev_ca(tls.files(settings).ca.parent) and not tls.init_dev_ca(tls.files(settings).ca.parent)
    return settings


async def test_a_client_verifying_the_ca_is_served_and_plaintext_or_a_foreign_ca_is_not(dev, tmp_path):
    server, target = await _serve(dev)
    try:
        assert await _check(tls.channel(dev, target)) == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.aio.AioRpcError) as plain:
            await _check(grpc.aio.insecure_channel(target))
        assert plain.value.code() == grpc.StatusCode.UNAVAILABLE
        stranger = Settings(state_dir=str(tmp_path / "elsewhere"))
        tls.init_dev_ca(tls.files(stranger).ca.parent)
        with pytest.raises(grpc.aio.AioRpcError) as foreign:
            await _check(tls.channel(stranger, target))  # another CA: the server's certificate does not verify
        assert foreign.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await server.stop(None)


async def test_mutual_tls_refuses_a_client_without_a_certificate_of_the_ca(dev, tmp_path):
    mutual = dev.with_(grpc_mtls=True)
    server, target = await _serve(mutual)
    try:
        assert await _check(tls.channel(mutual, target)) == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.aio.AioRpcError) as anonymous:
            await _check(tls.channel(dev, target))  # verifies the server, presents no certificate
        assert anonymous.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await server.stop(None)


async def test_plaintext_only_when_turned_off_and_missing_files_name_the_fix(tmp_path):
    off = Settings(state_dir=str(tmp_path / "none"), grpc_tls=False)
    server, target = await _serve(off)
    try:
        assert await _check(tls.channel(off, target)) == health_pb2.HealthCheckResponse.SERVING
    finally:
        await server.stop(None)
    with pytest.raises(SettingsError, match="poseidon tls init"):
        tls.server_credentials(off.with_(grpc_tls=True))


def test_processes_racing_to_make_the_development_ca_agree_on_one_complete_set(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    folder = tmp_path / "state" / "tls"
    with ThreadPoolExecutor(6) as pool:
        made = list(pool.map(lambda _: tls.init_dev_ca(folder), range(6)))
    assert made.count(True) == 1
    assert sorted(p.name for p in folder.iterdir()) == ["ca.pem", "client-key.pem", "client.pem", "server-key.pem", "server.pem"]
    assert [p.name for p in folder.parent.iterdir()] == ["tls"]  # no private folder left behind


def test_the_public_http_servers_use_tls_1_2_or_newer_with_the_installations_certificate_when_asked(dev, tmp_path):
    assert tls.http_server_context(dev) is None  # POSEIDON_HTTP_TLS off: plain HTTP behind a terminating proxy
    context = tls.http_server_context(dev.with_(http_tls=True))
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2 and not context.check_hostname
    assert tls.http_scheme(dev.with_(http_tls=True)) == "https" and tls.http_scheme(dev) == "http"
    with pytest.raises(SettingsError, match="TLS certificate"):
        tls.http_server_context(dev.with_(http_tls=True, tls_cert=str(tmp_path / "missing.pem")))
