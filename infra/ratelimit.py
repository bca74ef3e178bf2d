"""Token buckets per key (ingress: per platform account) kept in memory. Pure: no
I/O, the clock is injected; it decides "now or in N seconds", nothing else."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    updated: float


class TokenBuckets:
    """One token bucket per key: `rate` tokens a second, at most `burst` saved up.

    A request asks for n tokens at once (one per item of a batch). A request larger
    than the whole bucket is let through when the bucket is full and leaves it in
    debt, so an oversized batch is slowed down rather than refused forever.
    Buckets that have refilled are forgotten: a full bucket and no bucket behave
    the same, so memory stays bounded by the keys active in the last burst/rate seconds.
    """

    def __init__(self, rate: float, burst: float | None = None, *, clock: Callable[[], float] = time.monotonic):
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = float(rate)
        self.burst = float(burst if burst is not None else 2 * rate)
        if self.burst <= 0:
            raise ValueError("burst must be positive")
        self.clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._last_prune = clock()

    def acquire(self, key: str, n: int = 1) -> float:
        """Take n tokens from `key`'s bucket: 0.0 if granted, else the seconds to wait."""
        return self.acquire_all({key: n})

    def acquire_all(self, wanted: Mapping[str, int]) -> float:
        """Take tokens from several buckets, all or none (one HTTP request may carry
        items for several accounts): 0.0 if granted, else the longest wait."""
        now = self.clock()
        self._prune(now)
        wait = 0.0
        for key, n in wanted.items():
            tokens = self._level(key, now)
            need = min(float(n), self.burst)
            if tokens < need:
                wait = max(wait, (need - tokens) / self.rate)
        if wait > 0:
            return wait
        for key, n in wanted.items():
            self._buckets[key] = _Bucket(self._level(key, now) - n, now)
        return 0.0

    def retry_after(self, wait: float) -> int:
        """Whole seconds for a Retry-After header (at least 1)."""
        return max(1, math.ceil(wait))

    def __len__(self) -> int:
        return len(self._buckets)

    def _level(self, key: str, now: float) -> float:
        bucket = self._buckets.get(key)
        if bucket is None:
            return self.burst
        return min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)

    def _prune(self, now: float) -> None:
        # Each bucket is refilled completely within burst/rate seconds of its last use.
        if now - self._last_prune < self.burst / self.rate:
            return
        self._last_prune = now
        for key in [k for k in self._buckets if self._level(k, now) >= self.burst]:
            del self._buckets[key]
