"""The REST API gateway: a read (GET a wallet's balance → WalletQuery.GetBalance) and a
write the Config hub's processor decides (PUT a config value → ConfigService.SetValue),
each open loop at a fixed rate through the real `poseidon gateway`, against the same
requests on the bare aiohttp handler (bench/bare_http.py) and, for context, the same
calls straight on the hubs' gRPC servers. Starts no process itself: the runner does."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from base.settings import Settings
from bench import procs, query
from bench.commands import Wallet, wait_for_leaders
from bench.load import Posted, http_figures, http_session, open_loop, send
from infra import tls
from infra.topics import ensure_topics, hub_topics
from poseidon import bootstrap
from schemas.protos import config_pb2, config_pb2_grpc, wallet_pb2, wallet_pb2_grpc

HUBS = ("identity", "wallet", "config")
"""The gRPC servers behind the gateway here: identity for its readiness (and sign-in's
public keys), wallet for the read, config for the write."""
RATE_UNLIMITED = "1000000"
"""POSEIDON_GATEWAY_RATE_PER_S_CLIENT / _TENANT for the bench: one principal sends all
the load into five tenants, and the per-client limit (20/s by default) would answer 429
to nearly all of it. The limits' bookkeeping still runs on every request."""
CONNECTIONS = 32
"""Keep-alive connections the load client may open; an open loop needs about rate × latency."""
WRITE_TENANT = "tenant-0"
WRITE_KEYS = 64
"""The write cycles over this many keys, each request a new value: every write changes an
entry the processor already holds after the warm-up (no create per request)."""
FIRST_WRITE_TIMEOUT_S = 90.0
"""The config processor answers its first command only once its consumer group has formed."""


async def create_topics(settings: Settings) -> None:
    """The Config hub's topics (the write's processor), before its processor starts."""
    specs = hub_topics(bootstrap.hub("config"))
    await ensure_topics(settings, specs)
    await wait_for_leaders(settings, [settings.topic(spec.name) for spec in specs])


async def projected(settings: Settings, wallets: Sequence[Wallet]) -> bool:
    """Whether every one of `wallets` is in the wallet read store."""
    conn = await asyncpg.connect(settings.pg_dsn)
    try:
        found = await conn.fetchval(
            f'SELECT count(*) FROM "{settings.pg_schema("wallet")}".wallets WHERE wallet_id = ANY($1::uuid[])',
            [uuid.UUID(w.wallet_id) for w in wallets],
        )
    finally:
        await conn.close()
    return found == len(wallets)


@dataclass(frozen=True)
class Call:
    """One REST request of the load: method, path and JSON body (empty for a GET)."""

    method: str
    path: str
    body: bytes = b""


def reads(wallets: Sequence[Wallet]) -> list[Call]:
    return [Call("GET", f"/v1/tenants/{w.tenant_id}/wallets/{w.wallet_id}") for w in wallets]


def writes(count: int, tag: str, tenant: str = WRITE_TENANT) -> list[Call]:
    """`count` SetValue requests in the tenant's scope over WRITE_KEYS keys; value i is "<tag> <i>"."""
    return [
        Call(
            "PUT",
            f"/v1/config/values/{write_key(i)}",
            json.dumps({"scope_kind": "SCOPE_KIND_TENANT", "scope_id": tenant, "value_json": json.dumps(f"{tag} {i}")}).encode(),
        )
        for i in range(count)
    ]


def write_key(i: int) -> str:
    return f"bench.gateway.k{i % WRITE_KEYS}"


async def at_rate(base_url: str, calls: Sequence[Call], rate: float, seconds: float, token: str, pids: dict[str, int]) -> dict:
    """Open loop: request i (calls[i], cycled) is due at t0 + i/rate whatever happened to
    earlier ones; latency counts from when it was due. CPU per answered request of each
    process in `pids` (the first is the server under test), in milliseconds."""
    count = max(1, round(rate * seconds))
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    async with http_session(CONNECTIONS) as session:

        async def one(i: int, due: float) -> Posted:
            call = calls[i % len(calls)]
            answer = await send(session, call.method, base_url + call.path, i, (call.body, headers))
            return dataclasses.replace(answer, seconds=time.perf_counter() - due)

        before = {name: procs.cpu_seconds(pid) for name, pid in pids.items()}
        server = next(iter(pids.values()), None)
        with procs.CpuWindow(server) as cpu:
            started = time.perf_counter()
            answers, late = await open_loop(one, rate, count)
            elapsed = time.perf_counter() - started
        after = {name: procs.cpu_seconds(pid) for name, pid in pids.items()}
    figures = http_figures(answers, elapsed)
    answered = figures["accepted"]
    cpu_ms = {
        name: round(1000 * (after[name] - before[name]) / answered, 3)
        for name in pids
        if answered and before[name] is not None and after[name] is not None
    }
    return {
        "method": calls[0].method,
        "target_rate": round(rate, 1),
        "achieved_rate": figures.pop("per_second"),
        "sent_late": late,
        **figures,
        "cpu_ms_per_request": cpu_ms,
        "cpu": cpu.figures,
    }


async def first_write(base_url: str, token: str, timeout: float = FIRST_WRITE_TIMEOUT_S) -> float:
    """One write, sent again until it answers 200 (the path is up end to end); its seconds."""
    started = time.monotonic()
    last: Posted | None = None
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    async with http_session(1) as session:
        while time.monotonic() - started < timeout:
            call = writes(1, "first")[0]
            last = await send(session, call.method, base_url + call.path, 0, (call.body, headers))
            if last.status == 200:
                return round(time.monotonic() - started, 2)
            await asyncio.sleep(0.5)
    raise TimeoutError(f"no write through the gateway answered 200 within {timeout:.0f}s (last status {last and last.status})")


async def grpc_direct(settings: Settings, targets: dict[str, str], wallets: Sequence[Wallet], token: str, sizes) -> dict:
    """The read and the write straight on the hubs' gRPC servers, same rates and seconds
    (context: what the REST hop adds over the hub's own answer)."""
    metadata = (("authorization", f"Bearer {token}"),)
    read_requests = [wallet_pb2.GetBalanceRequest(tenant_id=w.tenant_id, wallet_id=w.wallet_id) for w in wallets]
    wallet_channel, config_channel = tls.channel(settings, targets["wallet"]), tls.channel(settings, targets["config"])
    async with wallet_channel, config_channel:
        balances = wallet_pb2_grpc.WalletQueryStub(wallet_channel)
        config = config_pb2_grpc.ConfigServiceStub(config_channel)

        def get_balance(i: int):
            return balances.GetBalance(read_requests[i % len(read_requests)], timeout=query.CALL_TIMEOUT, metadata=metadata)

        def set_value(tag: str):
            def call(i: int):
                request = config_pb2.SetValueRequest(
                    scope_kind=config_pb2.SCOPE_KIND_TENANT,
                    scope_id=WRITE_TENANT,
                    key=write_key(i),
                    value_json=json.dumps(f"{tag} {i}"),  # a new value: every write changes its entry
                )
                return config.SetValue(request, timeout=query.CALL_TIMEOUT * 5, metadata=metadata)

            return call

        out = {}
        read_rate, write_rate = sizes.gateway_read_rate, sizes.gateway_write_rate
        for name, warm, call, rate in (
            ("read", get_balance, get_balance, read_rate),
            ("write", set_value("grpc warm-up"), set_value("grpc"), write_rate),
        ):
            await query.open_loop(warm, rate, sizes.gateway_warmup)  # the write path is warm from the gateway's writes
            figures = await query.open_loop(call, rate, sizes.gateway_seconds)
            out[name] = {k: v for k, v in figures.items() if k != "slow_sample"}
        return out
