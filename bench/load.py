"""Load generation shared by the HTTP and round-trip benchmarks: latency figures
(nearest-rank percentiles), an HTTP client driving N keep-alive connections
(closed loop: each connection sends its next request when the last one is
answered), and an open-loop scheduler (request i is due at t0 + i/rate whatever
happened to earlier ones). Knows nothing of the platform."""

from __future__ import annotations

import asyncio
import itertools
import math
import statistics
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

import aiohttp

T = TypeVar("T")
Post = tuple[bytes, dict[str, str]]
"""One HTTP POST: the raw body and its headers."""
REQUEST_TIMEOUT_S = 30.0


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest rank: the smallest value with at least q % of the values at or below it."""
    if not sorted_values:
        return float("nan")
    k = max(0, math.ceil(q / 100 * len(sorted_values)) - 1)
    return sorted_values[k]


def latency_figures(seconds: Sequence[float]) -> dict:
    """p50/p90/p95/p99/max/mean in milliseconds, and how many samples they come from."""
    ordered = sorted(seconds)
    ms = lambda v: round(v * 1000, 3)  # noqa: E731
    return {
        "samples": len(ordered),
        "p50_ms": ms(percentile(ordered, 50)),
        "p90_ms": ms(percentile(ordered, 90)),
        "p95_ms": ms(percentile(ordered, 95)),
        "p99_ms": ms(percentile(ordered, 99)),
        "max_ms": ms(ordered[-1]) if ordered else None,
        "mean_ms": ms(statistics.fmean(ordered)) if ordered else None,
    }


@dataclass(frozen=True)
class Posted:
    """One answered (or failed) POST."""

    index: int
    """Which of the bodies it was."""
    status: int
    """HTTP status; 0 when the request failed without an answer."""
    seconds: float
    """From just before sending until the whole answer was read."""
    answered_at: float
    """Wall clock (time.time()) when the answer was read: comparable with another
    process's wall-clock stamps on this machine."""


def http_session(connections: int) -> aiohttp.ClientSession:
    """A client with at most `connections` keep-alive connections to one server."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=connections, limit_per_host=connections),
        timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S),
    )


async def post(session: aiohttp.ClientSession, url: str, index: int, body: Post) -> Posted:
    return await send(session, "POST", url, index, body)


async def send(session: aiohttp.ClientSession, method: str, url: str, index: int, body: Post) -> Posted:
    """One request of any method (an empty body sends none); its status, never an exception."""
    started = time.perf_counter()
    try:
        async with session.request(method, url, data=body[0] or None, headers=body[1]) as answer:
            await answer.read()
            status = answer.status
    except (aiohttp.ClientError, TimeoutError):
        status = 0
    return Posted(index, status, time.perf_counter() - started, time.time())


async def closed_loop(
    session: aiohttp.ClientSession, url: str, bodies: Sequence[Post], connections: int, seconds: float
) -> tuple[list[Posted], float]:
    """`connections` senders POST the bodies in turn (cycling) until `seconds` have
    passed; returns every answer and the wall time until the last one came back."""
    turns: Iterator[int] = itertools.cycle(range(len(bodies)))
    answers: list[Posted] = []
    started = time.perf_counter()
    stop_at = started + seconds

    async def sender() -> None:
        while time.perf_counter() < stop_at:
            i = next(turns)
            answers.append(await post(session, url, i, bodies[i]))

    await asyncio.gather(*(sender() for _ in range(connections)))
    return answers, time.perf_counter() - started


async def post_each_once(session: aiohttp.ClientSession, url: str, bodies: Sequence[Post], connections: int) -> list[Posted]:
    """Every body exactly once, `connections` at a time, in order; answers by index."""
    queue = iter(range(len(bodies)))
    answers: list[Posted | None] = [None] * len(bodies)

    async def sender() -> None:
        for i in queue:
            answers[i] = await post(session, url, i, bodies[i])

    await asyncio.gather(*(sender() for _ in range(connections)))
    return [a for a in answers if a is not None]


def http_figures(answers: Sequence[Posted], seconds: float) -> dict:
    """Accepted (200) per second over the window, statuses, and the 200s' latency."""
    statuses: dict[str, int] = {}
    for a in answers:
        statuses[str(a.status)] = statuses.get(str(a.status), 0) + 1
    accepted = [a.seconds for a in answers if a.status == 200]
    return {
        "requests": len(answers),
        "accepted": len(accepted),
        "statuses": statuses,
        "seconds": round(seconds, 3),
        "per_second": round(len(accepted) / seconds, 1) if seconds > 0 else 0.0,
        **latency_figures(accepted),
    }


def schedule(rate: float, count: int, start: float) -> list[float]:
    """When each of `count` requests is due (perf_counter seconds) at `rate` per second."""
    if rate <= 0:
        raise ValueError("rate must be positive")
    return [start + i / rate for i in range(count)]


async def open_loop(action: Callable[[int, float], Awaitable[T]], rate: float, count: int) -> tuple[list[T], int]:
    """Starts action(i, due) at its due time for i in 0..count-1 without waiting for
    earlier ones; returns their results in order and how many started more than
    1 ms late (a client that cannot keep up shows here, not as lower latency)."""
    tasks: list[asyncio.Task[T]] = []
    late = 0
    for i, due in enumerate(schedule(rate, count, time.perf_counter() + 0.01)):
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        elif delay < -0.001:
            late += 1
        tasks.append(asyncio.create_task(action(i, due)))
    return list(await asyncio.gather(*tasks)), late
