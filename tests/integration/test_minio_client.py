"""The attachment store against a real S3 server (S3Proxy from infra/local/s3.sh, started
here when it is not running) and a stand-in attachment CDN: objects land in the tenant's
bucket with their metadata, a second store of the same attachment changes nothing, too
large attachments are refused unstored, source failures are retried or not as they
deserve, and refused S3 credentials ask for re-authorisation and open the one S3 breaker."""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from base.settings import Settings
from infra.spoke import BreakerOpen, Outcome, PermanentError, ReauthorizationRequired, RetryableError, SpokeContext, SpokeSpec
from spokes.minio import PER_TENANT_BREAKER, SYSTEM
from spokes.minio.actions import MAX_ATTACHMENT_BYTES, SOURCE_SYSTEM, delete_attachment, store_attachment
from spokes.minio.client import S3Store
from spokes.minio.translate import bucket_for_tenant
from tests.harness import STANDIN_ATTACHMENT_SOURCES, free_port
from tests.standins.attachment_source import running_attachment_source

ROOT = Path(__file__).resolve().parents[2]
S3_SCRIPT = ROOT / "infra/local/s3.sh"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40
CONVERSATION = "5a3c0f0e-7d2b-5b9c-9a43-1f0e2d3c4b5a"


def _answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=2)
    except urllib.error.HTTPError:
        return True  # anonymous requests are refused: it is listening
    except OSError:
        return False
    return True


@pytest.fixture(scope="session")
def s3_url():
    """The real S3 server: the one at POSEIDON_S3_URL, else the local S3Proxy (started
    here if it is not running, and then stopped again at the end)."""
    settings = Settings.from_env()
    started = False
    if not _answers(settings.s3_url + "/"):
        if "POSEIDON_S3_URL" in os.environ:
            pytest.fail(f"S3 server {settings.s3_url} does not answer")
        subprocess.run([str(S3_SCRIPT), "setup"], check=True)
        subprocess.run([str(S3_SCRIPT), "up"], check=True)
        started = True
    yield settings.s3_url
    if started:
        subprocess.run([str(S3_SCRIPT), "down"], check=True)


@pytest.fixture
def settings(s3_url: str) -> Settings:
    env = Settings.from_env()
    return Settings(
        spoke_max_attempts=3,
        breaker_fail_max=3,
        breaker_reset_s=1,
        http_timeout_s=2,
        s3_url=s3_url,
        s3_access_key=env.s3_access_key,
        s3_secret_key=env.s3_secret_key,
        s3_region=env.s3_region,
        dev_mode=True,  # the stand-in CDN serves http
        **STANDIN_ATTACHMENT_SOURCES,
    )


def spoke_context(settings: Settings) -> SpokeContext:
    async def handle(ctx, name, record):  # the lead wires the real one to the Message hub's events
        return Outcome("store_attachment")

    spec = SpokeSpec("minio", SYSTEM, ("message.events",), lambda n, r: False, handle, per_tenant_breaker=PER_TENANT_BREAKER)
    return SpokeContext(spec, settings, codec=None, commands=None)


@pytest.fixture
async def ctx(settings: Settings):
    context = spoke_context(settings)
    yield context
    await context.http.aclose()


@pytest.fixture
async def store(settings: Settings):
    async with S3Store(settings) as s3:
        yield s3


@pytest.fixture
async def tenant(store: S3Store):
    """A tenant of this test alone; its bucket is emptied and removed afterwards."""
    tenant_id = f"t-{uuid.uuid4().hex[:10]}"
    yield tenant_id
    bucket = bucket_for_tenant(tenant_id)
    try:
        for key in await _keys(store, bucket):
            await store.client.delete_object(Bucket=bucket, Key=key)
        await store.client.delete_bucket(Bucket=bucket)
    except store.client.exceptions.NoSuchBucket:
        pass


@pytest.fixture
async def source():
    async with running_attachment_source() as running:
        yield running


async def _keys(store: S3Store, bucket: str) -> list[str]:
    answer = await store.client.list_objects_v2(Bucket=bucket)
    return [item["Key"] for item in answer.get("Contents", [])]


def breaker_state(system: str = SYSTEM) -> float | None:
    """The state of the system's one breaker for all tenants (the MinIO spoke has no per-tenant ones)."""
    return REGISTRY.get_sample_value("poseidon_breaker_state", {"system": system, "scope": "shared"})


async def store_photo(ctx, store, tenant, source, *, name="photo.png", index=0, message_id="m_abc123", **kwargs) -> Outcome:
    return await store_attachment(
        ctx,
        store,
        tenant_id=tenant,
        conversation_id=CONVERSATION,
        message_id=message_id,
        index=index,
        source_url=source.file_url(name),
        **kwargs,
    )


async def test_an_attachment_lands_in_the_tenants_bucket_with_its_metadata(ctx, store, tenant, source):
    source.state.add("photo.png", PNG, "image/png")
    outcome = await store_photo(ctx, store, tenant, source)

    bucket = f"poseidon-t-{tenant}"
    key = f"{CONVERSATION}/m_abc123/0-photo.png"
    sha256 = hashlib.sha256(PNG).hexdigest()
    assert outcome.succeeded and outcome.operation == "store_attachment"
    assert outcome.external_id == key
    assert dict(outcome.data) == {
        "bucket": bucket,
        "key": key,
        "size": str(len(PNG)),
        "content_type": "image/png",
        "sha256": sha256,
        "kind": "image",
    }
    head = await store.head_object(bucket, key)
    assert head["ContentType"] == "image/png" and head["ContentLength"] == len(PNG)
    assert head["Metadata"] == {
        "tenant": tenant,
        "conversation": CONVERSATION,
        "message-id": "m_abc123",
        "source-url-sha256": hashlib.sha256(source.file_url("photo.png").encode()).hexdigest(),
        "content-type": "image/png",
        "size": str(len(PNG)),
        "sha256": sha256,
    }
    stored = await store.client.get_object(Bucket=bucket, Key=key)
    async with stored["Body"] as body:
        assert await body.read() == PNG


async def test_the_content_type_is_sniffed_when_the_source_gives_none(ctx, store, tenant, source):
    source.state.add("blob", PNG, "")
    outcome = await store_photo(ctx, store, tenant, source, name="blob")
    assert outcome.data["content_type"] == "image/png"
    head = await store.head_object(outcome.data["bucket"], outcome.external_id)
    assert head["ContentType"] == "image/png"


async def test_storing_the_same_attachment_twice_keeps_one_object_and_fetches_it_once(ctx, store, tenant, source):
    source.state.add("photo.png", PNG, "image/png")
    first = await store_photo(ctx, store, tenant, source)
    again = await store_photo(ctx, store, tenant, source)

    assert again.succeeded and again.detail == "already stored"
    assert again.external_id == first.external_id and dict(again.data) == dict(first.data)
    assert await _keys(store, first.data["bucket"]) == [first.external_id]
    assert source.state.requests == ["/files/photo.png"]


async def test_two_tenants_store_into_two_buckets(ctx, store, tenant, source):
    other = f"t-{uuid.uuid4().hex[:10]}"
    source.state.add("photo.png", PNG, "image/png")
    mine = await store_photo(ctx, store, tenant, source)
    theirs = await store_photo(ctx, store, other, source)
    try:
        assert mine.data["bucket"] != theirs.data["bucket"]
        assert await _keys(store, theirs.data["bucket"]) == [theirs.external_id]
    finally:
        await store.client.delete_object(Bucket=theirs.data["bucket"], Key=theirs.external_id)
        await store.client.delete_bucket(Bucket=theirs.data["bucket"])


async def test_a_too_large_attachment_is_refused_by_its_declared_length_without_storing(ctx, store, tenant, source):
    source.state.add("huge.mp4", b"\0" * (MAX_ATTACHMENT_BYTES + 1), "video/mp4")
    with pytest.raises(PermanentError) as refused:
        await store_photo(ctx, store, tenant, source, name="huge.mp4")
    assert refused.value.code == "too_large"
    assert await _keys(store, bucket_for_tenant(tenant)) == []
    assert source.state.requests == ["/files/huge.mp4"]  # not retried


async def test_a_too_large_attachment_without_a_length_is_cut_off_while_streaming(ctx, store, tenant, source):
    source.state.chunked = True
    source.state.add("stream.bin", os.urandom(300_000), "application/octet-stream")
    with pytest.raises(PermanentError) as refused:
        await store_photo(ctx, store, tenant, source, name="stream.bin", max_bytes=100_000)
    assert refused.value.code == "too_large"
    assert await _keys(store, bucket_for_tenant(tenant)) == []


async def test_a_chunked_attachment_within_the_limit_is_stored_whole(ctx, store, tenant, source):
    body = os.urandom(300_000)
    source.state.chunked = True
    source.state.add("stream.bin", body, "application/octet-stream")
    outcome = await store_photo(ctx, store, tenant, source, name="stream.bin")
    assert outcome.data["size"] == str(len(body)) and outcome.data["sha256"] == hashlib.sha256(body).hexdigest()


async def test_a_source_500_is_retried_and_the_attachment_stored(ctx, store, tenant, source):
    source.state.add("photo.png", PNG, "image/png")
    source.state.fail(500, count=2)
    outcome = await store_photo(ctx, store, tenant, source)
    assert outcome.succeeded
    assert source.state.requests == ["/files/photo.png"] * 3
    assert await _keys(store, bucket_for_tenant(tenant)) == [outcome.external_id]


async def test_a_source_that_keeps_failing_gives_up_retryable_after_the_attempts(settings, store, tenant, source):
    source.state.add("photo.png", PNG, "image/png")
    source.state.fail(503, count=10)
    ctx = spoke_context(settings.with_(breaker_fail_max=10))
    try:
        with pytest.raises(RetryableError) as failed:
            await store_photo(ctx, store, tenant, source)
    finally:
        await ctx.http.aclose()
    assert failed.value.code == "source_unavailable"
    assert len(source.state.requests) == 3 and ctx.attempts == 3
    assert await _keys(store, bucket_for_tenant(tenant)) == []


async def test_a_source_outage_opens_the_attachment_source_breaker_not_the_s3_one(ctx, store, tenant, source):
    # The platform's CDN has its own breaker: its outage stops the hammering without
    # blaming S3 in metrics and breaker events.
    source.state.add("photo.png", PNG, "image/png")
    source.state.fail(500, count=10)
    with pytest.raises(BreakerOpen):
        await store_photo(ctx, store, tenant, source)
    assert breaker_state(SOURCE_SYSTEM) == 2 and len(source.state.requests) == 3
    assert breaker_state() != 2


async def test_a_rate_limited_source_is_retried(ctx, store, tenant, source):
    source.state.add("photo.png", PNG, "image/png")
    source.state.fail(429)
    assert (await store_photo(ctx, store, tenant, source)).succeeded
    assert len(source.state.requests) == 2


@pytest.mark.parametrize(("status", "code"), [(404, "source_not_found"), (403, "source_forbidden"), (400, "source_http_400")])
async def test_a_source_refusal_is_permanent_and_not_retried(ctx, store, tenant, source, status, code):
    source.state.add("photo.png", PNG, "image/png")
    source.state.fail(status)
    with pytest.raises(PermanentError) as refused:
        await store_photo(ctx, store, tenant, source)
    assert refused.value.code == code and not isinstance(refused.value, ReauthorizationRequired)
    assert len(source.state.requests) == 1


async def test_an_unreachable_source_is_retried(ctx, store, tenant):
    url = f"http://127.0.0.1:{free_port()}/files/photo.png"
    with pytest.raises(RetryableError):
        await store_attachment(
            ctx, store, tenant_id=tenant, conversation_id=CONVERSATION, message_id="m1", index=0, source_url=url
        )
    assert ctx.attempts == 3


async def test_a_source_url_that_is_not_http_is_refused(ctx, store, tenant):
    with pytest.raises(PermanentError) as refused:
        await store_attachment(
            ctx, store, tenant_id=tenant, conversation_id=CONVERSATION, message_id="m1", index=0, source_url="file:///etc/passwd"
        )
    assert refused.value.code == "invalid_source_url"


async def test_a_deleted_attachment_is_gone(ctx, store, tenant, source):
    source.state.add("photo.png", PNG, "image/png")
    stored = await store_photo(ctx, store, tenant, source)
    outcome = await delete_attachment(ctx, store, tenant_id=tenant, key=stored.external_id)
    assert outcome.succeeded
    assert await store.head_object(stored.data["bucket"], stored.external_id) is None


async def test_a_bucket_removed_behind_the_stores_back_is_made_again(ctx, store, tenant, source):
    source.state.add("a.png", PNG, "image/png")
    source.state.add("b.png", PNG, "image/png")
    first = await store_photo(ctx, store, tenant, source, name="a.png")
    await store.client.delete_object(Bucket=first.data["bucket"], Key=first.external_id)
    await store.client.delete_bucket(Bucket=first.data["bucket"])
    second = await store_photo(ctx, store, tenant, source, name="b.png", index=1)
    assert await _keys(store, second.data["bucket"]) == [second.external_id]


async def test_a_put_into_a_missing_bucket_is_permanent(store):
    with pytest.raises(PermanentError) as refused:
        await store.put_object(f"poseidon-t-missing-{uuid.uuid4().hex[:8]}", "k", b"x", "text/plain", {})
    assert refused.value.code == "no_such_bucket" and not isinstance(refused.value, ReauthorizationRequired)


@pytest.mark.parametrize("wrong", [{"s3_secret_key": "not-the-secret"}, {"s3_access_key": "nobody"}])
async def test_refused_credentials_require_reauthorization_without_retrying(settings, tenant, source, wrong):
    source.state.add("photo.png", PNG, "image/png")
    bad = settings.with_(**wrong)
    ctx = spoke_context(bad)
    try:
        async with S3Store(bad) as store:
            with pytest.raises(ReauthorizationRequired) as refused:
                await store_photo(ctx, store, tenant, source)
        assert ctx.attempts == 1
        assert "secret" not in str(refused.value) and "Signature" not in str(refused.value)
        assert source.state.requests == []  # nothing fetched for a store that cannot write
    finally:
        await ctx.http.aclose()


async def test_refused_credentials_open_the_one_s3_breaker_for_every_tenant_until_they_work_again(settings, source):
    source.state.add("photo.png", PNG, "image/png")
    ctx = spoke_context(settings)
    tenants = [f"t-{uuid.uuid4().hex[:10]}" for _ in range(2)]
    try:
        async with S3Store(settings.with_(s3_secret_key="rotated-away")) as bad:
            for _ in range(settings.breaker_fail_max - 1):
                with pytest.raises(ReauthorizationRequired):
                    await store_photo(ctx, bad, tenants[0], source)
            with pytest.raises(BreakerOpen) as opened:  # the failure that trips it
                await store_photo(ctx, bad, tenants[0], source)
            assert isinstance(opened.value.__cause__, ReauthorizationRequired)
            assert breaker_state() == 2
            # The credentials are the platform's: another tenant is refused without a call.
            with pytest.raises(BreakerOpen):
                await store_photo(ctx, bad, tenants[1], source)

        await asyncio.sleep(settings.breaker_reset_s + 0.1)
        async with S3Store(settings) as good:
            outcome = await store_photo(ctx, good, tenants[1], source)
            assert outcome.succeeded and breaker_state() == 0
            await good.client.delete_object(Bucket=outcome.data["bucket"], Key=outcome.external_id)
            await good.client.delete_bucket(Bucket=outcome.data["bucket"])
        assert [change[3] for change in ctx.breaker_changes] == ["open", "half-open", "closed"]
    finally:
        await ctx.http.aclose()


async def test_an_unreachable_s3_server_is_retryable(settings, tenant, source):
    source.state.add("photo.png", PNG, "image/png")
    down = settings.with_(s3_url=f"http://127.0.0.1:{free_port()}", breaker_fail_max=10)
    ctx = spoke_context(down)
    try:
        async with S3Store(down) as store:
            with pytest.raises(RetryableError) as failed:
                await store_photo(ctx, store, tenant, source)
        assert failed.value.code == "unreachable" and ctx.attempts == 3
    finally:
        await ctx.http.aclose()
