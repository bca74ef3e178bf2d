"""The shared spoke policy: only retryable failures are retried (with backoff),
a run of failures opens the breaker of that tenant only, an open breaker makes
no call, and it closes again after its reset time; the breaker metrics never
name a tenant. No network: the outside call is a coroutine that fails as told."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import REGISTRY

from base.settings import Settings
from infra.spoke import (
    BreakerOpen,
    Outcome,
    PermanentError,
    ReauthorizationRequired,
    RetryableError,
    SpokeContext,
    SpokeSpec,
)


def spec(per_tenant: bool = True, system: str = "test-system") -> SpokeSpec:
    async def handle(ctx, name, record):
        return Outcome("noop")

    return SpokeSpec("test", system, ("x.events",), lambda n, r: True, handle, per_tenant_breaker=per_tenant)


def context(per_tenant: bool = True, system: str = "test-system", **overrides) -> SpokeContext:
    settings = Settings(spoke_max_attempts=3, breaker_fail_max=3, breaker_reset_s=0.5, **overrides)
    return SpokeContext(spec(per_tenant, system), settings, codec=None, commands=None)


def breaker_metric(system: str, scope: str) -> float | None:
    return REGISTRY.get_sample_value("poseidon_breaker_state", {"system": system, "scope": scope})


def breakers_open(system: str) -> float | None:
    return REGISTRY.get_sample_value("poseidon_breakers_open", {"system": system})


def breaker_samples(system: str) -> list[tuple[str, dict[str, str], float]]:
    """Every sample of the breaker metrics about `system`, as the process would expose them."""
    return [
        (sample.name, sample.labels, sample.value)
        for metric in REGISTRY.collect()
        if metric.name in ("poseidon_breaker_state", "poseidon_breakers_open")
        for sample in metric.samples
        if sample.labels.get("system") == system
    ]


async def open_breaker(ctx: SpokeContext, tenant_id: str) -> None:
    for _ in range(3):  # breaker_fail_max
        with pytest.raises((ReauthorizationRequired, BreakerOpen)):
            await ctx.call(tenant_id, "send", Script(ReauthorizationRequired("token expired")))
    assert ctx.breaker(tenant_id).current_state == "open"


class Script:
    """An outside call that fails with the given exceptions, then succeeds."""

    def __init__(self, *failures: BaseException):
        self.failures, self.calls = list(failures), 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return "ok"


async def test_a_retryable_failure_is_retried_until_it_succeeds():
    ctx = context()
    call = Script(RetryableError("503"), RetryableError("timeout"))
    assert await ctx.call("t1", "send", call) == "ok"
    assert call.calls == 3 and ctx.attempts == 3


async def test_a_permanent_failure_is_not_retried():
    ctx = context()
    call = Script(PermanentError("bad request", code="invalid_parameter"))
    with pytest.raises(PermanentError):
        await ctx.call("t1", "send", call)
    assert call.calls == 1


async def test_the_retry_after_hint_is_honoured():
    ctx = context()
    call = Script(RetryableError("rate limited", retry_after=0.3))
    started = asyncio.get_running_loop().time()
    await ctx.call("t1", "send", call)
    assert asyncio.get_running_loop().time() - started >= 0.3


async def test_bad_credentials_of_one_tenant_open_that_tenants_breaker_only():
    ctx = context()
    for _ in range(3):
        with pytest.raises((ReauthorizationRequired, BreakerOpen)):
            await ctx.call("tenant-a", "send", Script(ReauthorizationRequired("token expired")))
    assert ctx.breaker("tenant-a").current_state == "open"
    never = Script()
    with pytest.raises(BreakerOpen):
        await ctx.call("tenant-a", "send", never)
    assert never.calls == 0, "an open breaker makes no call"
    assert await ctx.call("tenant-b", "send", Script()) == "ok"
    assert ("test-system", "tenant-a", "closed", "open") in ctx.breaker_changes


async def test_an_open_breaker_closes_after_its_reset_time_when_the_system_recovered():
    ctx = context()
    with pytest.raises(BreakerOpen):
        await ctx.call("t1", "send", Script(*[RetryableError("down")] * 10))
    assert ctx.breaker("t1").current_state == "open"
    await asyncio.sleep(0.6)
    assert await ctx.call("t1", "send", Script()) == "ok"
    assert ctx.breaker("t1").current_state == "closed"
    assert breaker_metric("test-system", "tenant") == 0


async def test_a_bad_request_does_not_count_against_the_breaker():
    ctx = context()
    for _ in range(5):
        with pytest.raises(PermanentError):
            await ctx.call("t1", "send", Script(PermanentError("bad request")))
    assert ctx.breaker("t1").current_state == "closed"


async def test_a_system_wide_breaker_is_shared_by_all_tenants():
    ctx = context(per_tenant=False)
    with pytest.raises(BreakerOpen):
        await ctx.call("t1", "put", Script(*[RetryableError("down")] * 10))
    with pytest.raises(BreakerOpen):
        await ctx.call("t2", "put", Script())


async def test_calls_to_another_system_have_their_own_breaker():
    ctx = context()
    with pytest.raises(BreakerOpen):
        await ctx.call("t1", "fetch", Script(*[RetryableError("cdn down")] * 10), system="cdn")
    assert ctx.breaker("t1", "cdn").current_state == "open"
    assert await ctx.call("t1", "put", Script()) == "ok"


async def test_breakers_of_many_tenants_add_no_series_per_tenant():
    ctx = context(system="fifty-tenants")
    tenants = [f"tenant-{n}" for n in range(50)]
    for tenant in tenants:
        await open_breaker(ctx, tenant)

    assert sorted(breaker_samples("fifty-tenants"), key=lambda sample: sample[0]) == [
        ("poseidon_breaker_state", {"system": "fifty-tenants", "scope": "tenant"}, 2.0),
        ("poseidon_breakers_open", {"system": "fifty-tenants"}, 50.0),
    ]
    # Which tenants: the breaker changes (BreakerStateChanged events) and logs say.
    assert [scope for _, scope, _, state in ctx.breaker_changes if state == "open"] == tenants


async def test_the_tenant_scope_shows_the_worst_breaker_and_the_open_ones_are_counted_until_they_close():
    ctx = context(system="worst-of")
    await open_breaker(ctx, "tenant-a")
    await open_breaker(ctx, "tenant-b")
    assert (breaker_metric("worst-of", "tenant"), breakers_open("worst-of")) == (2, 2)
    assert breaker_metric("worst-of", "shared") is None, "no breaker for all tenants yet"

    await asyncio.sleep(0.6)  # breaker_reset_s: the next call is the trial
    assert await ctx.call("tenant-a", "send", Script()) == "ok"
    assert (breaker_metric("worst-of", "tenant"), breakers_open("worst-of")) == (2, 1)

    ctx.breaker("tenant-b").half_open()
    assert (breaker_metric("worst-of", "tenant"), breakers_open("worst-of")) == (1, 0)

    assert await ctx.call("tenant-b", "send", Script()) == "ok"
    assert (breaker_metric("worst-of", "tenant"), breakers_open("worst-of")) == (0, 0)


async def test_the_breaker_for_all_tenants_has_its_own_scope_and_counts_as_open():
    ctx = context(system="shared-and-tenant")
    await open_breaker(ctx, "tenant-a")
    await open_breaker(ctx, "")  # a call without a tenant goes through the breaker for all tenants

    assert breaker_metric("shared-and-tenant", "shared") == 2
    assert breaker_metric("shared-and-tenant", "tenant") == 2
    assert breakers_open("shared-and-tenant") == 2


async def test_forgotten_breakers_leave_no_series_behind():
    ctx = context(system="forgotten")
    await open_breaker(ctx, "tenant-a")
    assert breakers_open("forgotten") == 1

    ctx.forget_breakers()

    assert breaker_samples("forgotten") == []
