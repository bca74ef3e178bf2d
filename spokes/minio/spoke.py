"""The MinIO spoke's wiring: the inbound-message saga's `StoreAttachments` step
fetches the message's attachments from the platform's URLs and stores them in the
tenant's bucket (the result and the outcome event carry the object keys, never the
bytes); its compensation `DeleteAttachments` removes them. It routes nothing."""

from __future__ import annotations

from contextlib import asynccontextmanager

from infra.spoke import Outcome, SpokeCall, SpokeContext, SpokeSpec
from spokes.minio import PER_TENANT_BREAKER, SYSTEM
from spokes.minio.actions import delete_attachment, store_attachment
from spokes.minio.client import S3Store


async def store_attachments(ctx: SpokeContext, call: SpokeCall) -> Outcome:
    p = call.payload
    stored = [
        await store_attachment(
            ctx,
            ctx.resources,
            tenant_id=call.tenant_id,
            conversation_id=p["conversation_id"],
            message_id=p["message_id"],
            index=index,
            source_url=url,
        )
        for index, url in enumerate(p["attachments"])
    ]
    keys = [o.external_id for o in stored]
    return Outcome(
        operation="store_attachments",
        detail=f"{len(keys)} attachment(s) stored",
        external_id=keys[0] if keys else "",
        data={"keys": ",".join(keys), "bucket": stored[0].data.get("bucket", "") if stored else ""},
        result={"keys": keys},
    )


async def delete_attachments(ctx: SpokeContext, call: SpokeCall) -> Outcome:
    keys = list(call.payload["keys"])
    for key in keys:
        await delete_attachment(ctx, ctx.resources, tenant_id=call.tenant_id, key=key)
    return Outcome(operation="delete_attachments", detail=f"{len(keys)} attachment(s) deleted", data={"keys": ",".join(keys)})


@asynccontextmanager
async def s3_store(ctx: SpokeContext):
    async with S3Store(ctx.settings) as store:
        yield store


SPOKE = SpokeSpec(
    name="minio",
    ops_index=4,
    system=SYSTEM,
    per_tenant_breaker=PER_TENANT_BREAKER,
    resources=s3_store,
    requests={"StoreAttachments": store_attachments, "DeleteAttachments": delete_attachments},
)
