"""What counts as our own platform being away, declared once: PostgreSQL or
Kafka restarting, a socket refused, a hub's answer timing out (`CommandTimeout`
is a `TimeoutError`, so an `OSError`). The record or request is fine; waiting and
trying again fixes it. Every retry and restart decision starts from these."""

from __future__ import annotations

import asyncpg
from aiokafka.errors import KafkaError

STORE_AWAY: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.OperatorInterventionError,
    # A connection whose server went away mid-statement refuses the next one
    # ("cannot switch to state 15; another operation (2) is in progress"):
    # a fresh connection fixes it, so it is the store being away, not a bug.
    asyncpg.InternalClientError,
)
"""PostgreSQL unreachable, shutting down, or its connection left unusable by that."""

PLATFORM_OUTAGE: tuple[type[BaseException], ...] = (OSError, KafkaError, *STORE_AWAY)
"""Any of our own dependencies away."""


class TakeoverFailed(KafkaError):
    """A partition was assigned to this member but could not be taken over (its
    state or position could not be read back: the rebalance listener failed,
    and aiokafka only logs that). Counted as an outage: the lifetime restarts
    and the partition is taken over again."""
