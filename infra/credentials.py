"""Tenants' credentials as a spoke uses them: read sealed from a read store, opened
for the tenant, and kept a few seconds per key, so the main path pays a local read
at most once per key and `ttl_s` (never a remote round trip) and a rotated credential
(saved again) is used within `ttl_s`; `forget` drops one at once (the outside system
refused it). Holds clear values in memory only; never logs them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

TTL_S = 10.0
MAX_KEYS = 10_000
"""Keys kept at most: a caller naming ever new keys (an unauthenticated push per made-up
tenant id) cannot grow the cache without bound; the oldest entries go first."""


class CredentialCache(Generic[K, V]):
    """`await cache.get(key)`: the value `load(key)` gave less than `ttl_s` ago, or a fresh
    one. At most `max_keys` entries (the oldest dropped first), and one load per key at a
    time: callers asking for a key being loaded wait for that load instead of each
    querying the store."""

    def __init__(self, load: Callable[[K], Awaitable[V]], ttl_s: float = TTL_S, max_keys: int = MAX_KEYS):
        self._load, self.ttl_s, self.max_keys = load, ttl_s, max_keys
        self._known: dict[K, tuple[float, V]] = {}
        self._loading: dict[K, asyncio.Future[V]] = {}

    async def get(self, key: K) -> V:
        known = self._known.get(key)
        if known is not None and known[0] > time.monotonic():
            return known[1]
        if (pending := self._loading.get(key)) is not None:
            return await asyncio.shield(pending)
        pending = self._loading[key] = asyncio.get_running_loop().create_future()
        try:
            value = await self._load(key)
        except asyncio.CancelledError:
            pending.cancel()
            raise
        except Exception as exc:
            pending.set_exception(exc)
            pending.exception()  # retrieved here: no "exception never retrieved" when nobody else waited
            raise
        finally:
            self._loading.pop(key, None)
        pending.set_result(value)
        self._known.pop(key, None)
        self._known[key] = (time.monotonic() + self.ttl_s, value)
        while len(self._known) > self.max_keys:
            del self._known[next(iter(self._known))]  # insertion order: the oldest first
        return value

    def forget(self, key: K) -> None:
        self._known.pop(key, None)
