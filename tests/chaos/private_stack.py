"""A Kafka + PostgreSQL stack of the test's own (infra/local/stack.sh in a
temporary folder, on free loopback ports), so that restarting a broker or the
database disturbs nobody else's tests: one Kafka node, or a cluster of three.
Stopped through its own PID files."""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient

from base.settings import Settings
from poseidon import bootstrap
from tests.chaos.world import say
from tests.harness import ROOT, free_port

STACK_SH = ROOT / "infra" / "local" / "stack.sh"


def free_port_run(n: int) -> int:
    """The first of `n` consecutive free loopback ports (stack.sh puts a cluster's
    nodes two ports apart from the first client and controller ports)."""
    rng = random.SystemRandom()
    while True:
        first = rng.randrange(20_000, 32_000 - n)  # below the ephemeral ports
        with ExitStack() as bound:
            try:
                for port in range(first, first + n):
                    bound.enter_context(socket.socket()).bind(("127.0.0.1", port))
            except OSError:
                continue
        return first


class PrivateStack:
    """`up`, `down`, the single-service stops and starts and the per-broker ones of
    stack.sh, on a folder and ports of its own; `brokers` Kafka nodes."""

    def __init__(self, brokers: int = 1) -> None:
        # PostgreSQL runs as the 'postgres' user when we are root: the folder must be reachable for it.
        self.dir = Path(tempfile.mkdtemp(prefix="poseidon-chaos-stack-"))
        self.dir.chmod(0o755)
        self.brokers = brokers
        self.kafka_port = free_port_run(2 * brokers)
        self.controller_port, self.pg_port = self.kafka_port + 1, free_port()
        self.env = {
            **os.environ,
            "POSEIDON_STACK_DIR": str(self.dir),
            "POSEIDON_KAFKA_BROKERS": str(brokers),
            "POSEIDON_KAFKA_PORT": str(self.kafka_port),
            "POSEIDON_KAFKA_CONTROLLER_PORT": str(self.controller_port),
            "POSEIDON_PG_PORT": str(self.pg_port),
            "POSEIDON_KAFKA_HEAP": "512m",
        }

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{self.kafka_port + 2 * node}" for node in range(self.brokers))

    def run(self, action: str, *args: str) -> float:
        """One stack.sh action; returns how long it took."""
        started = time.monotonic()
        done = subprocess.run([str(STACK_SH), action, *args], env=self.env, capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            raise RuntimeError(f"stack.sh {action} {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
        return time.monotonic() - started

    def kill_postgres(self) -> int:
        """SIGKILL this stack's PostgreSQL postmaster (the first line of its data folder's
        postmaster.pid): no shutdown and no checkpoint; its backends exit when they see
        it gone, and the next start recovers from the WAL. Returns the PID killed."""
        pid = int((self.dir / "postgres" / "data" / "postmaster.pid").read_text().split()[0])
        os.kill(pid, signal.SIGKILL)
        return pid

    def settings(self) -> Settings:
        """The platform's settings for this stack: with three brokers, topics at replication 3 / min ISR 2
        (as stack.sh sets the internal topics)."""
        replication = min(self.brokers, 3)
        return bootstrap.settings().with_(
            kafka_bootstrap=self.bootstrap,
            pg_dsn=f"postgresql://poseidon@127.0.0.1:{self.pg_port}/poseidon",
            topic_replication=replication,
            topic_min_isr=max(replication - 1, 1),
            dev_mode=True,
        )

    def destroy(self) -> None:
        try:
            self.run("down")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


@contextmanager
def running_private_stack(brokers: int = 1) -> Iterator[PrivateStack]:
    """A private stack up for the duration, then stopped and removed."""
    stack = PrivateStack(brokers)
    try:
        seconds = stack.run("up")
        say(f"private stack up in {seconds:.0f}s: Kafka {stack.bootstrap}, PostgreSQL 127.0.0.1:{stack.pg_port}")
        yield stack
    finally:
        stack.destroy()
        say("private stack stopped and removed")


async def partitions(settings: Settings) -> dict[tuple[str, int], dict]:
    """Every partition of the namespace's topics and of Kafka's internal ones:
    (topic, partition) → its metadata (`leader`, `replicas`, `isr`)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=5000)
    await admin.start()
    try:
        topics = await admin.describe_topics()
    finally:
        await admin.close()
    return {
        (t["topic"], p["partition"]): p
        for t in topics
        if t["topic"].startswith((settings.topic_prefix, "__"))
        for p in t["partitions"]
    }


async def seconds_until(settings: Settings, done, timeout: float = 120.0) -> float | None:
    """Seconds until `done(partitions(settings))` holds, polled twice a second (a
    metadata request failing while a broker is away counts as not yet); None if
    it did not within `timeout`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            if done(await partitions(settings)):
                return time.monotonic() - started
        except Exception:  # noqa: BLE001 - any metadata failure only means "ask again"
            pass
        await asyncio.sleep(0.5)
    return None
