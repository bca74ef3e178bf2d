"""Test harness for integration tests: a private namespace (topics + schemas) per
test and the platform's real processes started as subprocesses in it, which the
tests may SIGKILL and restart. Talks to the real local stack only."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import grpc
from aiokafka import AIOKafkaConsumer, TopicPartition

from base.settings import Settings
from infra import tls

ROOT = Path(__file__).resolve().parent.parent
POSEIDON = [sys.executable, "-m", "poseidon.cli"]


def ephemeral_ports() -> tuple[int, int]:
    """The kernel's range for the local ports of outgoing connections."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port(avoid=()) -> int:
    """A free port below the kernel's ephemeral range that is none of `avoid` (ports
    handed to servers not bound yet: a processor's ops port once came out equal to a
    gRPC port chosen earlier, and its health check reached the gRPC server). Not an
    ephemeral one: with 40 processes starting at once, an outgoing connection of one
    of them took the port chosen for another's ops server before it bound it."""
    return free_ports(1, avoid)[0]


def free_ports(n: int, avoid=()) -> list[int]:
    """`n` distinct free ports below the kernel's ephemeral range, none of `avoid`.
    Every socket stays bound until all are chosen, so the same port cannot come out
    twice (gRPC servers of two hubs on one port once answered each other's calls).
    Not from the ephemeral range, as `free_port` says: a CI run lost a test when an
    outgoing Kafka connection took a gRPC port handed out by the kernel's port 0."""
    rng = random.SystemRandom()
    low = min(ephemeral_ports()[0], 32768)
    avoid = set(avoid)
    sockets: list[socket.socket] = []
    try:
        while len(sockets) < n:
            port = rng.randrange(20_000, low)
            if port in avoid:
                continue
            s = socket.socket()
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                s.close()
                continue
            avoid.add(port)
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def env_for(settings: Settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSEIDON_")}
    env.update(
        POSEIDON_KAFKA_BOOTSTRAP=settings.kafka_bootstrap,
        POSEIDON_PG_DSN=settings.pg_dsn,
        POSEIDON_TOPIC_PREFIX=settings.topic_prefix,
        POSEIDON_SCHEMA_PREFIX=settings.schema_prefix,
        POSEIDON_TOPIC_PARTITIONS=str(settings.topic_partitions),
        POSEIDON_TOPIC_REPLICATION=str(settings.topic_replication),
        POSEIDON_TOPIC_MIN_ISR=str(settings.topic_min_isr),
        POSEIDON_SCHEMA_REGISTRY_URL=settings.schema_registry_url,
        POSEIDON_LOG_FORMAT="json",
        POSEIDON_LOG_LEVEL="INFO",
        POSEIDON_STATE_DIR=settings.state_dir,
        POSEIDON_JWT_KEYS_DIR=settings.keys_dir,
        POSEIDON_DEV_MODE="1" if settings.dev_mode else "",
        POSEIDON_ATTACHMENT_HOSTS=",".join(settings.attachment_hosts),
        POSEIDON_ATTACHMENT_ALLOWED_ADDRESSES=",".join(settings.attachment_allowed_addresses),
    )
    if settings.otlp_endpoint:  # the tracing test: every process exports its spans to its Jaeger
        env["POSEIDON_OTLP_ENDPOINT"] = settings.otlp_endpoint
    env.update({f"POSEIDON_GRPC_PORT_{hub.upper()}": str(port) for hub, port in settings.grpc_ports.items()})
    env.update({f"POSEIDON_PG_DSN_{store.upper()}": dsn for store, dsn in settings.pg_dsns.items()})
    env.update(extra)
    return env


@dataclass
class Proc:
    role: str
    hub: str
    ops_port: int
    log: Path
    popen: subprocess.Popen | None = None
    args: tuple[str, ...] = ()
    """`poseidon` arguments it runs with (`launch`); empty: `role hub`."""
    env: dict[str, str] = field(default_factory=dict)
    """Extra environment (`launch`), on top of the namespace's settings."""


STANDIN_ATTACHMENT_SOURCES = {"attachment_hosts": ("127.0.0.1",), "attachment_allowed_addresses": ("127.0.0.1",)}
"""The stand-ins serve attachments from 127.0.0.1 (over http, which dev mode allows)."""


@dataclass
class Platform:
    """The platform's processes for one test namespace."""

    settings: Settings
    workdir: Path
    procs: dict[str, Proc] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.settings = self.settings.with_(**STANDIN_ATTACHMENT_SOURCES)

    def start(self, role: str, hub: str = "wallet", wait: bool = True) -> Proc:
        name = f"{hub}-{role}"
        proc = self.procs.get(name) or Proc(role, hub, self._free_port(), self.workdir / f"{name}.log")
        self.procs[name] = proc
        return self._spawn(name, wait)

    def launch(self, name: str, *args: str, wait: bool = True, env: dict[str, str] | None = None) -> Proc:
        """Start `poseidon <args>` (any role: `ingress`, `router`, `spoke facebook`…)
        as process `name`, with `env` added to the namespace's settings."""
        proc = self.procs.get(name) or Proc(args[0], "", self._free_port(), self.workdir / f"{name}.log")
        proc.args, proc.env = tuple(args), dict(env or {})
        self.procs[name] = proc
        return self._spawn(name, wait)

    def _free_port(self) -> int:
        """An ops port none of this platform's processes was handed: 40 processes
        picking at random below the ephemeral range collided now and then (a
        birthday problem: two of them were given one port)."""
        return free_port([*self.settings.grpc_ports.values(), *(p.ops_port for p in self.procs.values())])

    def restart(self, name: str, wait: bool = True) -> Proc:
        """Start a stopped (or killed) process again, as it was started before."""
        return self._spawn(name, wait)

    def _spawn(self, name: str, wait: bool) -> Proc:
        proc = self.procs[name]
        with open(proc.log, "ab") as log:
            proc.popen = subprocess.Popen(
                [*POSEIDON, *(proc.args or (proc.role, proc.hub))],
                cwd=ROOT,
                env=env_for(self.settings, POSEIDON_OPS_PORT=str(proc.ops_port), **proc.env),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        if wait:
            self.wait_healthy(name)
        return proc

    def wait_healthy(self, name: str, timeout: float = 60.0) -> None:
        proc = self.procs[name]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.popen.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.popen.returncode}:\n{self.tail(name)}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{proc.ops_port}/healthz", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"{name} not healthy after {timeout}s:\n{self.tail(name)}")

    def kill(self, name: str) -> None:
        """SIGKILL: no shutdown hook runs, open transactions are left hanging."""
        proc = self.procs[name]
        proc.popen.send_signal(signal.SIGKILL)
        proc.popen.wait(10)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.popen is not None and proc.popen.poll() is None:
                proc.popen.terminate()
        for proc in self.procs.values():
            if proc.popen is not None:
                try:
                    proc.popen.wait(15)
                except subprocess.TimeoutExpired:
                    proc.popen.kill()
                    proc.popen.wait(5)

    def tail(self, name: str, lines: int = 40) -> str:
        path = self.procs[name].log
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def run_cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*POSEIDON, *args], cwd=ROOT, env=env_for(self.settings), capture_output=True, text=True, timeout=timeout
        )


def mint_token(settings: Settings, principal_id: str, kind: str = "user", scopes=(), ttl_s: int | None = None) -> str:
    """An access token signed with the namespace's keyring, as the Identity hub would."""
    from infra.security import Keyring, TokenIssuer

    return TokenIssuer(Keyring.of(settings), settings).access_token(principal_id, kind, scopes, ttl_s=ttl_s)


def platform_metadata(settings: Settings) -> tuple[tuple[str, str], ...]:
    """gRPC metadata of a platform service principal (every tenant)."""
    from infra.security import PLATFORM_SCOPE

    return (("authorization", f"Bearer {mint_token(settings, 'test-platform', 'service', [PLATFORM_SCOPE])}"),)


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


class _WithMetadata(grpc.aio.UnaryUnaryClientInterceptor):
    def __init__(self, metadata):
        self.metadata = tuple(metadata)

    async def intercept_unary_unary(self, continuation, details, request):
        details = details._replace(metadata=tuple(details.metadata or ()) + self.metadata)
        return await continuation(details, request)


def channel(settings: Settings, hub: str, metadata=None) -> grpc.aio.Channel:
    """A channel to a hub's gRPC port whose unary calls carry `metadata`
    (default: a platform principal's token); `metadata=()` sends none."""
    md = platform_metadata(settings) if metadata is None else metadata
    return tls.channel(settings, f"127.0.0.1:{settings.grpc_port(hub)}", interceptors=[_WithMetadata(md)] if md else None)


async def read_topic(settings: Settings, topic: str, timeout: float = 10.0) -> list:
    """Every committed record of a physical topic, in partition/offset order."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, isolation_level="read_committed", group_id=None)
    await consumer.start()
    try:
        from infra.topics import partitions_of

        parts = (await partitions_of(settings, [topic]))[topic]
        tps = [TopicPartition(topic, p) for p in parts]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        records = []
        deadline = time.monotonic() + timeout
        while any([await consumer.position(tp) < ends[tp] for tp in tps]):
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read {topic} to its end in {timeout}s")
            for recs in (await consumer.getmany(timeout_ms=500)).values():
                records.extend(recs)
        return sorted(records, key=lambda r: (r.partition, r.offset))
    finally:
        await consumer.stop()


async def eventually(check, timeout: float = 30.0, interval: float = 0.2):
    """Await `check()` until it returns a truthy value; return that value."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(interval)
    raise TimeoutError(f"condition not met in {timeout}s (last value {last!r})")


async def fetch(settings: Settings, schema: str, sql: str, *args):
    conn = await asyncpg.connect(settings.pg_dsn, server_settings={"search_path": schema})
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


async def connect_page_with_proof(
    settings: Settings,
    facebook,
    tenant_id: str,
    page_id: str,
    principal_id: str,
    *,
    redirect_uri: str = "https://app.example.com/facebook/callback",
    timeout: float = 60.0,
):
    """Connects (or reconnects, rotating its token) a tenant's Facebook page through the
    product's connect flow — the Tenant gRPC server's StartFacebookConnect and
    CompleteFacebookConnect, as `principal_id` (an admin of the tenant), against the
    Facebook stand-in `facebook` (a RunningFacebook the gRPC server's
    POSEIDON_FACEBOOK_GRAPH_URL points at), where a user who manages the page logs in.
    Returns the FacebookConnectReply."""
    from schemas.protos import tenant_pb2 as pb
    from schemas.protos import tenant_pb2_grpc

    user = f"fb-user-of-{tenant_id}"
    facebook.state.add_user(user, {page_id: f"Page of {tenant_id}"})
    ch = channel(settings, "tenant", bearer(mint_token(settings, principal_id)))
    try:
        stub = tenant_pb2_grpc.TenantChannelsStub(ch)
        request = pb.StartFacebookConnectRequest(tenant_id=tenant_id, redirect_uri=redirect_uri)
        deadline = time.monotonic() + timeout
        while True:  # the principal's membership may not be in the read store yet
            try:
                start = await stub.StartFacebookConnect(request)
                break
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.PERMISSION_DENIED or time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)
        code = facebook.state.authorize(user, redirect_uri)  # the admin's browser, back from the Login dialog
        return await stub.CompleteFacebookConnect(
            pb.CompleteFacebookConnectRequest(tenant_id=tenant_id, code=code, state=start.state, page_id=page_id)
        )
    finally:
        await ch.close()


async def provision_tenant(
    settings: Settings,
    client,
    tenant: str,
    page: str,
    *,
    app_id: str | None = None,
    entitled: bool = True,
    quota: int = 1_000_000,
    wallet_id: str | None = None,
    funds: int = 0,
    timeout: float = 120.0,
) -> str:
    """Everything a tenant needs before its Messenger messages are answered — the
    tenant, its page connected, a bot app subscribed (registered here unless
    `app_id` names one), a billing entitlement (unless `entitled` is false), and a
    wallet funded for the per-message charge (when `wallet_id` is given) — then
    waits until the read stores the router and the saga driver consult show it.
    Returns the app id."""
    from hubs.app.commands import RegisterApp, SubscribeApp, subscription_id
    from hubs.billing.commands import BILLING_PROVIDER, ApplyEntitlement, entitlement_id
    from hubs.tenant.commands import ConnectChannel, CreateTenant, channel_account_id
    from hubs.wallet.commands import CreditFunds, OpenWallet
    from infra.command_client import new_meta

    now = datetime.now(UTC)
    commands = [
        CreateTenant(new_meta(tenant, tenant, actor="operator"), name=tenant.title(), owner_id=f"{tenant}-owner"),
        ConnectChannel(new_meta(channel_account_id("facebook", page), tenant), channel="facebook", account_id=page),
    ]
    if app_id is None:
        app_id = str(uuid.uuid4())
        commands.append(
            RegisterApp(new_meta(app_id, "platform"), name="Support bot", kind="bot", channels=["messenger"], visibility="public")
        )
    commands.append(SubscribeApp(new_meta(subscription_id(tenant, app_id), tenant), app_id=app_id))
    if entitled:
        commands.append(
            ApplyEntitlement(
                new_meta(entitlement_id(tenant), tenant, actor=BILLING_PROVIDER), plan="pro", message_quota=quota,
                period_start=now - timedelta(days=1), period_end=now + timedelta(days=30), features=("messaging",),
            )
        )  # fmt: skip
    if wallet_id is not None:
        commands.append(OpenWallet(new_meta(wallet_id, tenant, actor="operator"), currency="EUR"))
    results = await asyncio.wait_for(asyncio.gather(*[await client.submit(c) for c in commands]), timeout)
    if wallet_id is not None and funds:
        credit = CreditFunds(new_meta(wallet_id, tenant, actor="operator"), amount=funds, reference="test top-up")
        results.append(await client.send(credit, timeout=timeout))
    assert all(r.accepted for r in results), [(r.rejection, r.reason) for r in results if not r.accepted]

    checks = [
        ("tenant", "SELECT count(*) AS n FROM channel_accounts WHERE connected AND tenant_id = $1"),
        ("app", "SELECT count(*) AS n FROM subscriptions WHERE active AND tenant_id = $1"),
    ]
    if entitled:
        checks.append(("billing", "SELECT count(*) AS n FROM entitlements WHERE tenant_id = $1"))
    if wallet_id is not None:
        checks.append(("wallet", f"SELECT count(*) AS n FROM wallets WHERE tenant_id = $1 AND balance >= {int(funds)}"))

    async def projected() -> bool:
        for hub, sql in checks:
            if (await fetch(settings, settings.pg_schema(hub), sql, tenant))[0]["n"] < 1:
                return False
        return True

    await eventually(projected, timeout=timeout)
    return app_id
