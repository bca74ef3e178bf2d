"""Tenants' credentials as a spoke uses them: read sealed from a read store, opened
for the tenant, and kept a few seconds per key, so the main path pays a local read
at most once per key and `ttl_s` (never a remote round trip) and a rotated credential
(saved again) is used within `ttl_s`; `forget` drops one at once (the outside system
refused it). Holds clear values in memory only; never logs them."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

TTL_S = 10.0


class CredentialCache(Generic[K, V]):
    """`await cache.get(key)`: the value `load(key)` gave less than `ttl_s` ago, or a fresh one."""

    def __init__(self, load: Callable[[K], Awaitable[V]], ttl_s: float = TTL_S):
        self._load, self.ttl_s = load, ttl_s
        self._known: dict[K, tuple[float, V]] = {}

    async def get(self, key: K) -> V:
        known = self._known.get(key)
        if known is not None and known[0] > time.monotonic():
            return known[1]
        value = await self._load(key)
        self._known[key] = (time.monotonic() + self.ttl_s, value)
        return value

    def forget(self, key: K) -> None:
        self._known.pop(key, None)
