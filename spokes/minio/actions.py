"""What the MinIO spoke does, as plain async functions the spoke's handler calls in one
line: fetch an attachment from the platform's URL (streamed, bounded) and store it in the
tenant's bucket; remove it again (the compensation). Outcomes carry the object key and
what the object is, never its bytes or the (signed) source URL."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from infra.spoke import Outcome, PermanentError, RetryableError, SpokeContext
from spokes.minio.client import S3Store
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
MAX_ATTACHMENT_BYTES = 25 * 1024 * 1024
SNIFF_BYTES = 64
STORE_OPERATION = "store_attachment"
DELETE_OPERATION = "delete_attachment"


@dataclass(frozen=True)
class Fetched:
    body: bytes
    content_type: str
    """As the source declared it (may be empty or generic)."""


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
) -> Outcome:
    """Store attachment `index` of a message in the tenant's bucket under
    `<conversation>/<message>/<index>-<file name>`. Idempotent: when that key already
    exists, nothing is fetched or written and the stored object is reported again."""
    check_source_url(source_url)
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
    fetched = await ctx.call(
        tenant_id, "fetch_attachment", lambda: fetch_bounded(ctx.http, source_url, max_bytes), system=SOURCE_SYSTEM
    )
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


def check_source_url(url: str) -> None:
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise PermanentError("attachment source must be an http(s) URL", code="invalid_source_url")


async def fetch_bounded(http: httpx.AsyncClient, url: str, max_bytes: int) -> Fetched:
    """GET the attachment, streamed; refuses more than `max_bytes` before reading it
    (declared length) or as soon as it passes it (undeclared). Errors never name the URL:
    platform attachment URLs are signed."""
    try:
        async with http.stream("GET", url, headers={"Accept": "*/*"}, follow_redirects=True) as response:
            check_source_status(response)
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise too_large(max_bytes)
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > max_bytes:
                    raise too_large(max_bytes)
            return Fetched(bytes(body), response.headers.get("content-type", ""))
    except httpx.TooManyRedirects:
        raise PermanentError("attachment source redirects too often", code="source_redirect_loop") from None
    except httpx.DecodingError:
        raise PermanentError("attachment source sent an undecodable body", code="source_undecodable") from None


def too_large(max_bytes: int) -> PermanentError:
    return PermanentError(f"attachment larger than {max_bytes} bytes: not stored", code="too_large")


def check_source_status(response: httpx.Response) -> None:
    status = response.status_code
    if 200 <= status < 300:
        return
    reason = f"attachment source answered {status}"
    if status in (404, 410):
        raise PermanentError(reason, code="source_not_found")
    if status in (401, 403):
        # Platform CDN URLs are signed and expire: asking again will not help.
        raise PermanentError(reason, code="source_forbidden")
    if status in (408, 425, 429):
        raise RetryableError(
            reason, code="rate_limited" if status == 429 else "source_timeout", retry_after=_retry_after(response)
        )
    if status >= 500:
        raise RetryableError(reason, code="source_unavailable", retry_after=_retry_after(response))
    raise PermanentError(reason, code=f"source_http_{status}")


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None
