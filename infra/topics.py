"""Declares every topic the platform uses with explicit partitions, cleanup
policy and retention, and creates the missing ones. Nothing relies on broker
auto-creation."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field

import structlog
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from base.settings import Settings
from infra.hub import HubSpec

log = structlog.get_logger(__name__)

FOREVER = "-1"
WEEK_MS = str(7 * 24 * 3600 * 1000)
MONTH_MS = str(30 * 24 * 3600 * 1000)


@dataclass(frozen=True)
class TopicSpec:
    name: str
    """Logical name; the physical name adds POSEIDON_TOPIC_PREFIX."""
    config: dict[str, str] = field(default_factory=dict)


def hub_topics(hub: HubSpec) -> list[TopicSpec]:
    return [
        TopicSpec(hub.topic("commands"), {"cleanup.policy": "delete", "retention.ms": WEEK_MS}),
        # The system of record: never deleted, never compacted.
        TopicSpec(hub.topic("events"), {"cleanup.policy": "delete", "retention.ms": FOREVER, "retention.bytes": "-1"}),
        TopicSpec(hub.topic("command-results"), {"cleanup.policy": "delete", "retention.ms": MONTH_MS}),
        TopicSpec(hub.topic("commands.dlq"), {"cleanup.policy": "delete", "retention.ms": FOREVER}),
        TopicSpec(hub.topic("events.dlq"), {"cleanup.policy": "delete", "retention.ms": FOREVER}),
        # The processor's state changelog (one record per aggregate and batch, compacted).
        # The name is the one faust gave it, so state written before the move off faust restores.
        *(TopicSpec(changelog_topic(hub, table), {"cleanup.policy": "compact"}) for table in PROCESSOR_TABLES),
    ]


# A stored item carries its text twice (text and raw) and a dead letter the whole
# body: room for twice the largest accepted webhook body (1 MiB) plus framing.
INGRESS_MAX_MESSAGE_BYTES = str(2 * 1024 * 1024 + 64 * 1024)


def ingress_topics() -> list[TopicSpec]:
    return [
        # Everything a platform pushed to us and we answered 200 for: kept like events.
        TopicSpec(
            "ingress.inbound",
            {"cleanup.policy": "delete", "retention.ms": FOREVER, "max.message.bytes": INGRESS_MAX_MESSAGE_BYTES},
        ),
        TopicSpec(
            "ingress.dlq", {"cleanup.policy": "delete", "retention.ms": FOREVER, "max.message.bytes": INGRESS_MAX_MESSAGE_BYTES}
        ),
        TopicSpec("ingress.inbound.dlq", {"cleanup.policy": "delete", "retention.ms": FOREVER}),
    ]


def spoke_topics(name: str) -> list[TopicSpec]:
    return [
        TopicSpec(f"spoke.{name}.events", {"cleanup.policy": "delete", "retention.ms": FOREVER}),
        # Saga steps for this spoke (SpokeRequested), keyed by saga id; answered on spoke.<name>.events.
        TopicSpec(f"spoke.{name}.requests", {"cleanup.policy": "delete", "retention.ms": FOREVER}),
        TopicSpec(f"spoke.{name}.dlq", {"cleanup.policy": "delete", "retention.ms": FOREVER}),
    ]


PROCESSOR_TABLES = ("aggregate_states",)
"""The processor's compacted changelogs. Command outcomes need none: the dedup
window is read back from `<hub>.command-results` (same partition as the command)."""


def processor_app_id(hub: HubSpec) -> str:
    """Logical id of a hub's processor: its consumer group and transactional-id stem
    (the physical one adds the topic prefix)."""
    return f"poseidon-{hub.name}-processor"


def changelog_topic(hub: HubSpec, table: str) -> str:
    return f"{processor_app_id(hub)}-{hub.name}-{table}-changelog"


async def ensure_topics(settings: Settings, specs: Iterable[TopicSpec]) -> list[str]:
    """Create the topics that do not exist yet; return the physical names created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=15000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(
                settings.topic(spec.name),
                num_partitions=settings.topic_partitions,
                replication_factor=settings.topic_replication,
                topic_configs={**spec.config, "min.insync.replicas": str(settings.topic_min_isr)},
            )
            for spec in specs
            if settings.topic(spec.name) not in existing
        ]
        if wanted:
            try:
                await admin.create_topics(wanted)
            except TopicAlreadyExistsError:
                pass  # a concurrent starter won the race; the topics exist, which is all we need
            log.info("topics created", topics=[t.name for t in wanted])
            await _wait_until_visible(admin, [t.name for t in wanted])
        return [t.name for t in wanted]
    finally:
        await admin.close()


async def _wait_until_visible(admin: AIOKafkaAdminClient, names: list[str], timeout_s: float = 30.0) -> None:
    """CreateTopics returns before every broker serves the new topics' metadata and
    configs; a consumer starting in that window fails (faust: PartitionsMismatch)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    pending = list(names)
    while pending:
        described = await admin.describe_topics(pending)
        pending = [t["topic"] for t in described if t["error_code"] != 0 or not t["partitions"]]
        if not pending:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"topics not visible after {timeout_s}s: {pending}")
        await asyncio.sleep(0.1)


async def delete_topics(settings: Settings, names: Iterable[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=15000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        doomed = [n for n in names if n in existing]
        if doomed:
            await admin.delete_topics(doomed)
    finally:
        await admin.close()


async def partitions_of(settings: Settings, topics: Iterable[str], *, strict: bool = True) -> dict[str, list[int]]:
    """Partition numbers of existing physical topics. A missing topic is an error
    that names it (run `poseidon topics create`) when `strict`, and is left out
    otherwise (a spoke that never ran has no topic yet)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=15000)
    await admin.start()
    try:
        described = await admin.describe_topics(list(topics))
    finally:
        await admin.close()
    found = {}
    for t in described:
        if t["error_code"] != 0 or not t["partitions"]:
            if strict:
                raise LookupError(f"topic {t['topic']} does not exist (error {t['error_code']}); run `poseidon topics create`")
            continue
        found[t["topic"]] = sorted(p["partition"] for p in t["partitions"])
    return found
