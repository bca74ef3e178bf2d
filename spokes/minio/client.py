"""The S3 I/O of the attachment store (aiobotocore against any S3 server: MinIO, S3Proxy,
AWS): a bucket per tenant, objects with metadata, HEAD to find what is already stored.
Every failure is raised as an infra.spoke exception; no credential, signature or
object content is ever logged or put into an error."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
from collections.abc import Mapping
from contextlib import AsyncExitStack
from typing import Any

import structlog
from aiobotocore.session import get_session
from botocore import exceptions as boto
from botocore.config import Config

from base.settings import Settings
from infra.spoke import PermanentError, ReauthorizationRequired, RetryableError
from spokes.minio.translate import bucket_for_tenant

log = structlog.get_logger(__name__)

# S3 error codes (https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html) by what to do.
RETRYABLE_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestThrottled",
        "TooManyRequests",
        "RequestLimitExceeded",
        "ServiceUnavailable",
        "InternalError",
        "RequestTimeout",
        "RequestTimeTooSkewed",
        "OperationAborted",
        "XMinioServerNotInitialized",
        "XMinioStorageFull",
    }
)
REAUTHORIZATION_CODES = frozenset(
    {
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "InvalidToken",
        "TokenRefreshRequired",
        "AccountProblem",
        "AllAccessDisabled",
        "InvalidSecurity",
        "NotSignedUp",
        "403",
    }
)


def _snake(code: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", code).lower()


def map_client_error(exc: boto.ClientError, operation: str) -> Exception:
    """One S3 error answer → RetryableError / ReauthorizationRequired / PermanentError."""
    error = exc.response.get("Error", {}) or {}
    meta = exc.response.get("ResponseMetadata", {}) or {}
    code = str(error.get("Code") or "")
    status = int(meta.get("HTTPStatusCode") or 0)
    # The message only: S3 servers echo StringToSign / CanonicalRequest beside it.
    reason = f"{operation}: S3 answered {status}" + (f" {code}" if code and code != str(status) else "")
    if code in REAUTHORIZATION_CODES or (not code and status == 403):
        return ReauthorizationRequired(f"{reason}: the platform's S3 credentials were refused")
    if code in RETRYABLE_CODES or status >= 500 or status == 429:
        retry_after = _retry_after((meta.get("HTTPHeaders") or {}).get("retry-after"))
        return RetryableError(
            reason, code="rate_limited" if code == "SlowDown" or status == 429 else "s3_unavailable", retry_after=retry_after
        )
    return PermanentError(reason, code=_snake(code) if code and not code.isdigit() else f"s3_http_{status}")


def map_botocore_error(exc: boto.BotoCoreError, operation: str) -> Exception:
    if isinstance(exc, boto.HTTPClientError | boto.ConnectionError):
        return RetryableError(f"{operation}: {type(exc).__name__} talking to S3", code="unreachable")
    if isinstance(exc, boto.NoCredentialsError | boto.PartialCredentialsError):
        return ReauthorizationRequired(f"{operation}: no S3 credentials configured")
    if isinstance(exc, boto.ParamValidationError):
        return PermanentError(f"{operation}: invalid S3 request parameters", code="invalid_request")
    return PermanentError(f"{operation}: {type(exc).__name__}", code="s3_client_error")


def _retry_after(value: object) -> float | None:
    try:
        return max(0.0, float(str(value))) if value is not None else None
    except ValueError:
        return None


class S3Store:
    """One pooled S3 client for the spoke's life (`async with S3Store(settings) as store`).
    The credentials are the platform's (settings.s3_*), the same for every tenant; the
    tenant's isolation is its own bucket."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._stack: AsyncExitStack | None = None
        self._client: Any = None
        self._known_buckets: set[str] = set()
        self._starting = asyncio.Lock()

    async def start(self) -> S3Store:
        if self._client is not None:
            return self
        async with self._starting:  # concurrent first calls share one client
            if self._client is None:
                await self._open()
        return self

    async def _open(self) -> None:
        timeout = self.settings.http_timeout_s
        config = Config(
            region_name=self.settings.s3_region,
            connect_timeout=min(timeout, 5.0),
            read_timeout=timeout,
            # Retries belong to the spoke runtime (one policy, one breaker), not to botocore.
            retries={"total_max_attempts": 1, "mode": "standard"},
            s3={"addressing_style": "path"},
            signature_version="s3v4",
            # S3-compatible servers differ in the newer checksum headers; Content-MD5 is universal.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            max_pool_connections=20,
        )
        stack = AsyncExitStack()
        self._client = await stack.enter_async_context(
            get_session().create_client(
                "s3",
                endpoint_url=self.settings.s3_url,
                aws_access_key_id=self.settings.s3_access_key,
                aws_secret_access_key=self.settings.s3_secret_key,
                config=config,
            )
        )
        self._stack = stack

    async def close(self) -> None:
        stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            await stack.aclose()

    async def __aenter__(self) -> S3Store:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def client(self) -> Any:
        if self._client is None:
            raise RuntimeError("S3Store is not started: use `async with S3Store(settings)` or `await store.start()`")
        return self._client

    async def _s3(self, operation: str, **params: Any) -> dict[str, Any]:
        await self.start()
        try:
            return await getattr(self.client, operation)(**params)
        except boto.ClientError as exc:
            raise map_client_error(exc, operation) from None
        except boto.BotoCoreError as exc:
            raise map_botocore_error(exc, operation) from None
        except (TimeoutError, OSError) as exc:
            raise RetryableError(f"{operation}: {type(exc).__name__} talking to S3", code="unreachable") from None

    async def ensure_bucket(self, tenant_id: str) -> str:
        """The tenant's bucket, created when missing; returns its name."""
        try:
            bucket = bucket_for_tenant(tenant_id)
        except ValueError as exc:
            raise PermanentError(str(exc), code="invalid_tenant") from None
        if bucket in self._known_buckets:
            return bucket
        try:
            await self._s3("head_bucket", Bucket=bucket)
        except PermanentError as exc:
            if isinstance(exc, ReauthorizationRequired) or exc.code not in ("s3_http_404", "no_such_bucket", "not_found"):
                raise
            await self._create_bucket(bucket)
        self._known_buckets.add(bucket)
        return bucket

    async def _create_bucket(self, bucket: str) -> None:
        params: dict[str, Any] = {"Bucket": bucket}
        if self.settings.s3_region != "us-east-1":
            params["CreateBucketConfiguration"] = {"LocationConstraint": self.settings.s3_region}
        try:
            await self._s3("create_bucket", **params)
            log.info("bucket created", bucket=bucket)
        except PermanentError as exc:
            # Two workers racing to create it: the other one won, which is the same result.
            if exc.code != "bucket_already_owned_by_you":
                raise

    async def put_object(self, bucket: str, key: str, body: bytes, content_type: str, metadata: Mapping[str, str]) -> str:
        """Store the bytes under the key with their metadata; returns the ETag."""
        try:
            answer = await self._s3(
                "put_object",
                Bucket=bucket,
                Key=key,
                Body=body,
                ContentType=content_type,
                ContentLength=len(body),
                ContentMD5=base64.b64encode(hashlib.md5(body, usedforsecurity=False).digest()).decode("ascii"),
                Metadata=dict(metadata),
            )
        except PermanentError as exc:
            if exc.code == "no_such_bucket" and bucket in self._known_buckets:
                # Removed behind our back: forget it, so the retry's ensure_bucket makes it again.
                self._known_buckets.discard(bucket)
                raise RetryableError(f"put_object: bucket {bucket} vanished", code="bucket_missing") from None
            raise
        return str(answer.get("ETag", "")).strip('"')

    async def head_object(self, bucket: str, key: str) -> dict[str, Any] | None:
        """The object's HEAD answer (ContentLength, ContentType, ETag, Metadata), None if absent."""
        try:
            return await self._s3("head_object", Bucket=bucket, Key=key)
        except PermanentError as exc:
            if isinstance(exc, ReauthorizationRequired) or exc.code not in ("s3_http_404", "no_such_key", "not_found"):
                raise
            return None

    async def delete_object(self, bucket: str, key: str) -> None:
        """Remove one object (the compensation of a store); absent objects are fine."""
        await self._s3("delete_object", Bucket=bucket, Key=key)
