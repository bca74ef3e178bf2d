"""Session setup: the real Kafka and PostgreSQL. By default the local stack of
infra/local (what `make test` starts; started here too if it is not running).
POSEIDON_TEST_STACK=testcontainers starts both in Docker containers instead,
where a Docker engine exists. Pointing POSEIDON_KAFKA_BOOTSTRAP/POSEIDON_PG_DSN
at an existing cluster uses that."""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from pathlib import Path

import asyncpg
import pytest

from base.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def _reachable(settings: Settings) -> str | None:
    async def probe() -> None:
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=5000)
        await admin.start()
        try:
            await admin.describe_cluster()
        finally:
            await admin.close()
        conn = await asyncpg.connect(settings.pg_dsn, timeout=5)
        await conn.close()

    try:
        asyncio.run(probe())
        return None
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


@pytest.fixture(scope="session")
def stack() -> Settings:
    mode = os.environ.get("POSEIDON_TEST_STACK", "local")
    if mode == "testcontainers":
        yield from _testcontainers_stack()
        return
    from poseidon import bootstrap

    settings = bootstrap.settings()
    if _reachable(settings) is not None and "POSEIDON_KAFKA_BOOTSTRAP" not in os.environ:
        subprocess.run([str(ROOT / "infra/local/stack.sh"), "up"], check=True)
    problem = _reachable(settings)
    if problem:
        pytest.fail(f"Kafka {settings.kafka_bootstrap} / PostgreSQL {settings.pg_dsn} not reachable: {problem}")
    # A development machine: the built-in webhook secrets are accepted (the tests sign with them).
    yield settings.with_(dev_mode=True)


def _testcontainers_stack():
    from testcontainers.kafka import KafkaContainer
    from testcontainers.postgres import PostgresContainer

    with KafkaContainer("confluentinc/cp-kafka:7.6.0").with_kraft() as kafka, PostgresContainer("postgres:15") as pg:
        dsn = pg.get_connection_url().replace("postgresql+psycopg2", "postgresql")
        from poseidon import bootstrap

        yield bootstrap.settings().with_(kafka_bootstrap=kafka.get_bootstrap_server(), pg_dsn=dsn, dev_mode=True)


@pytest.fixture
async def namespace(stack: Settings, tmp_path: Path):
    """Private topics and schemas for one test, deleted afterwards."""
    from infra.topics import delete_topics, ensure_topics
    from poseidon import bootstrap

    tag = f"t{uuid.uuid4().hex[:10]}"
    settings = stack.with_(
        topic_prefix=f"{tag}.",
        schema_prefix=f"{tag}_",
        topic_partitions=2,
        grpc_ports=dict(zip(stack.grpc_ports, _free_ports(len(stack.grpc_ports)), strict=True)),
        state_dir=str(tmp_path / "state"),
    )
    await ensure_topics(settings, bootstrap.all_topics())
    from infra import tls

    tls.init_dev_ca(tls.files(settings).ca.parent)  # gRPC is TLS: this test's own development CA
    yield settings
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        ours = [t for t in await admin.list_topics() if t.startswith(tag)]
    finally:
        await admin.close()
    await delete_topics(settings, ours)
    conn = await asyncpg.connect(settings.pg_dsn)
    try:
        for row in await conn.fetch("SELECT nspname FROM pg_namespace WHERE nspname LIKE $1", f"{tag}%"):
            await conn.execute(f'DROP SCHEMA "{row[0]}" CASCADE')
    finally:
        await conn.close()


@pytest.fixture
def platform(namespace: Settings, tmp_path: Path):
    from tests.harness import Platform

    p = Platform(namespace, tmp_path)
    yield p
    p.stop_all()


def _free_ports(n: int) -> list[int]:
    from tests.harness import free_ports

    return free_ports(n)


@pytest.fixture(autouse=True)
def fresh_logging_configuration():
    """Every test starts from structlog's defaults: a CLI run in-process (which
    configures logging for production, e.g. at WARNING) must not decide what a
    later test's capture_logs sees."""
    import structlog

    structlog.reset_defaults()
    yield
