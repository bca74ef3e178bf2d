"""The MinIO spoke's wiring: attachments of a routed message are fetched from
the platform's URL and stored in the tenant's bucket; the outcome event carries
the object keys, never the bytes. It routes nothing."""

from __future__ import annotations

from contextlib import asynccontextmanager

from infra.spoke import Outcome, SpokeContext, SpokeSpec
from spokes.minio import PER_TENANT_BREAKER, SYSTEM
from spokes.minio.actions import store_attachment
from spokes.minio.client import S3Store

MESSAGE_ROUTED = "poseidon.message.MessageRouted"


def accepts(event_type: str, record: dict) -> bool:
    return event_type == MESSAGE_ROUTED and any(a.get("url") for a in record.get("attachments", ()))


async def handle(ctx: SpokeContext, event_type: str, record: dict) -> Outcome:
    envelope = record["envelope"]
    stored = []
    for index, attachment in enumerate(record["attachments"]):
        if not attachment.get("url"):
            continue
        outcome = await store_attachment(
            ctx,
            ctx.resources,
            tenant_id=envelope["tenant_id"],
            conversation_id=envelope["aggregate_id"],
            message_id=record["message_id"],
            index=index,
            source_url=attachment["url"],
        )
        stored.append(outcome)
    keys = [o.external_id for o in stored]
    return Outcome(
        operation="store_attachments",
        succeeded=all(o.succeeded for o in stored),
        detail=f"{len(keys)} attachment(s) stored",
        external_id=keys[0] if keys else "",
        data={"keys": ",".join(keys), "bucket": stored[0].data.get("bucket", "") if stored else ""},
    )


@asynccontextmanager
async def s3_store(ctx: SpokeContext):
    async with S3Store(ctx.settings) as store:
        yield store


SPOKE = SpokeSpec(
    name="minio",
    system=SYSTEM,
    topics=("message.events",),
    accepts=accepts,
    handle=handle,
    per_tenant_breaker=PER_TENANT_BREAKER,
    resources=s3_store,
)
