"""The MinIO spoke's two outside systems: the S3 store (aiobotocore against any S3 server:
MinIO, S3Proxy, AWS): a bucket per tenant, objects with metadata, HEAD to find what is
already stored; and the attachment source, fetched only from allow-listed hosts at
public addresses, within one deadline and a size cap. Every failure is raised as an
infra.spoke exception; no credential, signature, signed URL or object content is ever
logged or put into an error."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import socket
import ssl
import zlib
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import httpx
import structlog
from aiobotocore.session import get_session
from botocore import exceptions as boto
from botocore.config import Config

from base.settings import Settings
from infra.spoke import PermanentError, ReauthorizationRequired, RetryableError
from spokes.minio.translate import address_refusal, bucket_for_tenant, source_refusal

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


MAX_REDIRECTS = 3
"""Redirects followed per download; every one is checked like the first URL."""
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
DECODE_STEP = 64 * 1024
"""Most bytes one step of decompression may produce: a compressed body is expanded at
most this far past the size cap before the cap stops it."""
ACCEPT_ENCODING = "gzip, deflate"
"""The codings BoundedDecoder decodes in steps; anything else the source sends is refused."""

Resolver = Callable[[str, int], Awaitable[Sequence[str]]]
"""(host, port) → every address the name resolves to."""


@dataclass(frozen=True)
class Fetched:
    body: bytes
    content_type: str
    """As the source declared it (may be empty or generic)."""


async def resolve_host(host: str, port: int) -> list[str]:
    """The system resolver's addresses for `host` (A and AAAA), in its order."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class AttachmentSource:
    """Downloads an attachment from the chat platform's CDN without letting the URL,
    which arrives in a webhook, reach anything else:

    * only http(s) URLs on `settings.attachment_hosts`, and https alone unless
      `settings.dev_mode` (the stand-ins serve http);
    * the host is resolved once, and refused if ANY of its addresses is not public
      (loopback, private, link-local, metadata…: `translate.address_refusal`) unless it
      is one of `settings.attachment_allowed_addresses`. The request then goes to that
      checked address itself, with the host name only in the Host header and as TLS
      server name (SNI and certificate check), so a second, different DNS answer
      (rebinding) never gets a connection;
    * redirects are followed here, at most MAX_REDIRECTS, each Location checked again
      as above: httpx's own following would connect to wherever they point;
    * one deadline for everything (`settings.attachment_timeout_s`), besides httpx's
      timeout per connect and read;
    * the size cap counts the declared length, the bytes received and the DECODED bytes,
      which are decoded here in steps of DECODE_STEP: httpx decodes each received chunk
      whole, and 64 KiB of gzip may expand to 64 MiB before any check could run.

    Each hop gets a client of its own, without environment proxies (a proxy would resolve
    and connect by itself) nor pooled connections (one made for another host's name).
    `resolve` and `verify` are the seams the tests use for names and certificates."""

    def __init__(self, settings: Settings, *, resolve: Resolver = resolve_host, verify: ssl.SSLContext | bool = True):
        self.settings = settings
        self.resolve = resolve
        self.verify = verify

    def check(self, url: str | httpx.URL) -> httpx.URL:
        """The URL, parsed once (what is checked is what is requested), if its scheme and
        host may be fetched at all; else PermanentError. No I/O: the address check needs
        the resolver and happens in `fetch`."""
        try:
            target = httpx.URL(url)
        except (httpx.InvalidURL, TypeError):
            raise PermanentError("attachment source must be an http(s) URL", code="invalid_source_url") from None
        if target.userinfo:
            raise PermanentError("attachment source URL must not carry credentials", code="invalid_source_url")
        refusal = source_refusal(
            target.scheme,
            target.raw_host.decode("ascii"),
            hosts=self.settings.attachment_hosts,
            allow_http=self.settings.dev_mode,
        )
        if refusal is not None:
            code, reason = refusal
            raise PermanentError(reason, code=code)
        return target

    async def fetch(self, url: str | httpx.URL, max_bytes: int) -> Fetched:
        """GET the attachment (see the class); PermanentError when it may not or cannot be
        had, RetryableError when the source is down, slow or unreachable. Errors name the
        host at most, never the URL: platform attachment URLs are signed."""
        deadline = self.settings.attachment_timeout_s
        try:
            async with asyncio.timeout(deadline):
                return await self._follow(self.check(url), max_bytes)
        except (TimeoutError, httpx.TimeoutException):
            raise RetryableError(f"attachment download did not finish within {deadline:g} s", code="source_timeout") from None
        except httpx.TransportError as exc:
            raise RetryableError(f"attachment source: {type(exc).__name__}", code="source_unreachable") from None

    async def _follow(self, target: httpx.URL, max_bytes: int) -> Fetched:
        address = await self._checked_address(target)
        redirects = 0
        while True:
            host = target.raw_host.decode("ascii")
            async with (
                httpx.AsyncClient(
                    transport=httpx.AsyncHTTPTransport(verify=self.verify),
                    timeout=httpx.Timeout(self.settings.http_timeout_s, connect=min(self.settings.http_timeout_s, 5.0)),
                    trust_env=False,
                ) as client,
                client.stream(
                    "GET",
                    target.copy_with(host=address),
                    headers={"Host": target.netloc.decode("ascii"), "Accept": "*/*", "Accept-Encoding": ACCEPT_ENCODING},
                    extensions={"sni_hostname": host} if target.scheme == "https" else {},
                ) as response,
            ):
                if response.status_code not in REDIRECT_STATUSES:
                    check_source_status(response)
                    return await read_bounded(response, max_bytes)
                location = response.headers.get("location", "")
                if not location:
                    raise PermanentError(
                        f"attachment source {host} redirected nowhere", code=f"source_http_{response.status_code}"
                    )
            if redirects == MAX_REDIRECTS:
                raise PermanentError(f"attachment source redirects more than {MAX_REDIRECTS} times", code="source_redirect_loop")
            redirects += 1
            try:
                target = self.check(target.join(location))
                address = await self._checked_address(target)
            except PermanentError as exc:
                raise PermanentError(f"redirect refused: {exc.reason}", code=exc.code) from None

    async def _checked_address(self, target: httpx.URL) -> str:
        """The one address to connect to: the host resolved once, every address checked."""
        host = target.raw_host.decode("ascii")
        port = target.port or (443 if target.scheme == "https" else 80)
        try:
            addresses = await self.resolve(host, port)
        except OSError:
            raise RetryableError(f"attachment source {host} does not resolve", code="source_unreachable") from None
        if not addresses:
            raise RetryableError(f"attachment source {host} does not resolve", code="source_unreachable")
        for address in addresses:
            kind = address_refusal(address, self.settings.attachment_allowed_addresses)
            if kind is not None:
                raise PermanentError(
                    f"attachment source {host} resolves to a {kind} address: not fetched", code="source_address_refused"
                )
        return addresses[0]


async def read_bounded(response: httpx.Response, max_bytes: int) -> Fetched:
    """The body, decoded, refused (too_large) as soon as its declared length, the bytes
    received or the bytes decoded pass `max_bytes`."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise too_large(max_bytes)
    decoder = BoundedDecoder(response.headers.get("content-encoding", ""))
    body = bytearray()
    received = 0
    async for chunk in response.aiter_raw():
        received += len(chunk)
        if received > max_bytes:
            raise too_large(max_bytes)
        for piece in decoder.feed(chunk):
            body += piece
            if len(body) > max_bytes:
                raise too_large(max_bytes)
    body += decoder.flush()
    if len(body) > max_bytes:
        raise too_large(max_bytes)
    return Fetched(bytes(body), response.headers.get("content-type", ""))


class BoundedDecoder:
    """Content-Encoding `identity`, `gzip` or `deflate` (zlib-wrapped or raw, as servers
    differ), decoded at most DECODE_STEP bytes at a time, so the caller can stop a
    compression bomb after one step. Stacked or other codings are refused (we never ask
    for them: ACCEPT_ENCODING)."""

    def __init__(self, content_encoding: str):
        coding = content_encoding.strip().lower()
        self._raw_deflate_possible = coding == "deflate"
        if coding in ("", "identity"):
            self._zlib = None
        elif coding in ("gzip", "x-gzip"):
            self._zlib = zlib.decompressobj(zlib.MAX_WBITS | 16)
        elif coding == "deflate":
            self._zlib = zlib.decompressobj()
        else:
            raise PermanentError("attachment source sent a body in a coding we did not ask for", code="source_undecodable")

    def feed(self, data: bytes) -> Iterator[bytes]:
        if self._zlib is None:
            yield data
            return
        while data:
            try:
                piece = self._zlib.decompress(data, DECODE_STEP)
            except zlib.error:
                if not self._raw_deflate_possible:
                    raise PermanentError("attachment source sent an undecodable body", code="source_undecodable") from None
                self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)  # "deflate" sent without its zlib header
                self._raw_deflate_possible = False
                continue
            self._raw_deflate_possible = False
            data = self._zlib.unconsumed_tail
            yield piece

    def flush(self) -> bytes:
        try:
            return self._zlib.flush() if self._zlib is not None else b""
        except zlib.error:
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
            reason, code="rate_limited" if status == 429 else "source_timeout", retry_after=_source_retry_after(response)
        )
    if status >= 500:
        raise RetryableError(reason, code="source_unavailable", retry_after=_source_retry_after(response))
    raise PermanentError(reason, code=f"source_http_{status}")


def _source_retry_after(response: httpx.Response) -> float | None:
    return _retry_after(response.headers.get("retry-after") or None)
