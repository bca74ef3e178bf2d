"""The shared spoke policy: only retryable failures are retried (with backoff),
a run of failures opens the breaker of that tenant only, an open breaker makes
no call, and it closes again after its reset time. No network: the outside call
is a coroutine that fails as told."""

from __future__ import annotations

import asyncio

import pytest

from base.settings import Settings
from infra.spoke import (
    BREAKER_STATE,
    BreakerOpen,
    Outcome,
    PermanentError,
    ReauthorizationRequired,
    RetryableError,
    SpokeContext,
    SpokeSpec,
)


def spec(per_tenant: bool = True) -> SpokeSpec:
    async def handle(ctx, name, record):
        return Outcome("noop")

    return SpokeSpec("test", "test-system", ("x.events",), lambda n, r: True, handle, per_tenant_breaker=per_tenant)


def context(per_tenant: bool = True, **overrides) -> SpokeContext:
    settings = Settings(spoke_max_attempts=3, breaker_fail_max=3, breaker_reset_s=0.5, **overrides)
    return SpokeContext(spec(per_tenant), settings, codec=None, commands=None)


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
    assert BREAKER_STATE.labels("test-system", "tenant-a")._value.get() == 2
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
    assert BREAKER_STATE.labels("test-system", "t1")._value.get() == 0


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
