"""What the MinIO spoke does, as plain async functions the spoke's handler calls in one
line: fetch an attachment from the platform's URL (client.AttachmentSource: allow-listed
hosts, public addresses, one deadline, a size cap) and store it in the tenant's bucket;
remove it again (the compensation). Outcomes carry the object key and what the object
is, never its bytes or the (signed) source URL."""

from __future__ import annotations

import hashlib

from infra.spoke import Outcome, PermanentError, SpokeContext
from spokes.minio.client import AttachmentSource, S3Store
from spokes.minio.translate import (
    bucket_for_tenant,
    choose_content_type,
    filename_from_url,
    object_key,
    object_metadata,
    stored_data,
    stored_data_from_head,
)

SOURCE_SYSTEM = "attachment-source"
"""The chat platform's CDN: a system of its own, with its own breaker. Its failures say
nothing about S3, so they must never count against (or be reported as) the S3 breaker."""
MAX_ATTACHMENT_BYTES = 25 * 1024 * 1024
SNIFF_BYTES = 64
STORE_OPERATION = "store_attachment"
DELETE_OPERATION = "delete_attachment"


async def store_attachment(
    ctx: SpokeContext,
    store: S3Store,
    *,
    tenant_id: str,
    conversation_id: str,
    message_id: str,
    index: int,
    source_url: str,
    filename: str = "",
    max_bytes: int = MAX_ATTACHMENT_BYTES,
    source: AttachmentSource | None = None,
) -> Outcome:
    """Store attachment `index` of a message in the tenant's bucket under
    `<conversation>/<message>/<index>-<file name>`. Idempotent: when that key already
    exists, nothing is fetched or written and the stored object is reported again.
    A URL that may not be fetched is refused before S3 is asked anything."""
    source = source or AttachmentSource(ctx.settings)
    source.check(source_url)
    name = filename or filename_from_url(source_url)
    try:
        bucket_for_tenant(tenant_id)
        key = object_key(conversation_id, message_id, index, name)
    except ValueError as exc:
        raise PermanentError(str(exc), code="invalid_attachment") from None

    bucket = await ctx.call(tenant_id, "ensure_bucket", lambda: store.ensure_bucket(tenant_id))
    existing = await ctx.call(tenant_id, "head_object", lambda: store.head_object(bucket, key))
    if existing is not None:
        data = stored_data_from_head(bucket, key, existing)
        return Outcome(STORE_OPERATION, detail="already stored", external_id=key, data=data)

    # Fetch and put are retried apart: an S3 hiccup does not download the bytes again.
    # The chat platform's CDN is another system than S3: its own breaker, its own metric.
    fetched = await ctx.call(tenant_id, "fetch_attachment", lambda: source.fetch(source_url, max_bytes), system=SOURCE_SYSTEM)
    body = fetched.body
    content_type = choose_content_type(fetched.content_type, body[:SNIFF_BYTES], name)
    sha256 = hashlib.sha256(body).hexdigest()
    metadata = object_metadata(
        tenant_id=tenant_id,
        conversation_id=conversation_id,
        message_id=message_id,
        source_url=source_url,
        content_type=content_type,
        size=len(body),
        sha256=sha256,
    )

    async def put() -> str:
        await store.ensure_bucket(tenant_id)  # known: no call; vanished since: made again
        return await store.put_object(bucket, key, body, content_type, metadata)

    await ctx.call(tenant_id, "put_object", put)
    data = stored_data(bucket=bucket, key=key, size=len(body), content_type=content_type, sha256=sha256)
    return Outcome(STORE_OPERATION, detail=f"stored {len(body)} bytes", external_id=key, data=data)


async def delete_attachment(ctx: SpokeContext, store: S3Store, *, tenant_id: str, key: str) -> Outcome:
    """Remove a stored attachment from the tenant's bucket (absent is fine: S3 says 204)."""
    bucket = await ctx.call(tenant_id, "ensure_bucket", lambda: store.ensure_bucket(tenant_id))
    await ctx.call(tenant_id, "delete_object", lambda: store.delete_object(bucket, key))
    return Outcome(DELETE_OPERATION, detail="deleted", external_id=key, data={"bucket": bucket, "key": key})
