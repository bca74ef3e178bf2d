"""gRPC projection query: open-loop load at a fixed rate against the real
`poseidon grpc wallet` server. Each request is due at t0 + i/rate whatever
happened to earlier ones, and its latency counts from when it was due, so a
slow server cannot hide behind a slowed-down client (no coordinated omission).
The baseline is the standard health Check on the same server at the same rate."""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Awaitable, Callable

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from base.settings import Settings
from bench.load import open_loop as schedule_open_loop
from bench.load import percentile
from bench.procs import CpuWindow
from infra import tls
from schemas.protos import wallet_pb2, wallet_pb2_grpc

CHANNELS = 4
CALL_TIMEOUT = 2.0
SLOW = 0.005
SLOW_SAMPLE = 60


async def serving(settings: Settings, target: str) -> bool:
    async with tls.channel(settings, target) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
        return reply.status == health_pb2.HealthCheckResponse.SERVING


async def open_loop(call: Callable[[int], Awaitable[object]], rate: float, seconds: float) -> dict:
    total = int(rate * seconds)
    latencies: list[float] = []
    slow: list[tuple[float, float]] = []
    service_times: list[float] = []
    errors: dict[str, int] = {}
    t0 = time.perf_counter() + 0.01  # load.open_loop's first due time, to the scheduler's precision

    async def one(i: int, due: float) -> None:
        sent = time.perf_counter()
        try:
            await call(i)
        except grpc.aio.AioRpcError as exc:
            errors[exc.code().name] = errors.get(exc.code().name, 0) + 1
            return
        done = time.perf_counter()
        latencies.append(done - due)
        if done - due > SLOW:
            slow.append((round(due - t0, 3), round((done - due) * 1000, 1)))
        service_times.append(done - sent)

    _, late = await schedule_open_loop(one, rate, total)
    wall = time.perf_counter() - t0
    latencies.sort()
    service_times.sort()
    ms = 1000.0
    return {
        "requests": total,
        "ok": len(latencies),
        "errors": errors,
        "target_rate": rate,
        "achieved_rate": round(len(latencies) / wall, 1),
        "sent_late": late,
        "p50_ms": round(percentile(latencies, 50) * ms, 3),
        "p90_ms": round(percentile(latencies, 90) * ms, 3),
        "p95_ms": round(percentile(latencies, 95) * ms, 3),
        "p99_ms": round(percentile(latencies, 99) * ms, 3),
        "max_ms": round(latencies[-1] * ms, 3) if latencies else None,
        "mean_ms": round(statistics.fmean(latencies) * ms, 3) if latencies else None,
        "service_p99_ms": round(percentile(service_times, 99) * ms, 3),
        "over_5ms": len(slow),
        # When the slow ones were due (s into the run) and took (ms): a burst is a stall.
        "slow_sample": sorted(slow)[:SLOW_SAMPLE],
    }


async def measure(
    settings: Settings,
    target: str,
    wallets: list,
    rate: float,
    seconds: float,
    warmup: float,
    server_pid: int | None = None,
    token: str = "",
) -> dict:
    """GetBalance on random known wallets, then Health/Check, both at `rate`."""
    channels = [tls.channel(settings, target) for _ in range(CHANNELS)]
    try:
        for channel in channels:
            await channel.channel_ready()
        wallet_stubs = [wallet_pb2_grpc.WalletQueryStub(c) for c in channels]
        health_stubs = [health_pb2_grpc.HealthStub(c) for c in channels]
        rng = random.Random(7)
        requests = [wallet_pb2.GetBalanceRequest(tenant_id=w.tenant_id, wallet_id=w.wallet_id) for w in wallets]
        health_request = health_pb2.HealthCheckRequest(service="")
        # The token is verified on every call (signature, claims), as in production.
        metadata = (("authorization", f"Bearer {token}"),) if token else None

        def get_balance(i: int):
            return wallet_stubs[i % CHANNELS].GetBalance(rng.choice(requests), timeout=CALL_TIMEOUT, metadata=metadata)

        def health_check(i: int):
            return health_stubs[i % CHANNELS].Check(health_request, timeout=CALL_TIMEOUT)

        await open_loop(get_balance, rate, warmup)
        with CpuWindow(server_pid) as cpu:
            query = await open_loop(get_balance, rate, seconds)
        query["cpu"] = cpu.figures
        await open_loop(health_check, rate, warmup)
        with CpuWindow(server_pid) as cpu:
            baseline = await open_loop(health_check, rate, seconds)
        baseline["cpu"] = cpu.figures
        return {"get_balance": query, "health_check": baseline, "channels": CHANNELS}
    finally:
        for channel in channels:
            await channel.close()
