"""The MinIO spoke's attachment fetch cannot be turned against the platform (SSRF): only
allow-listed hosts, over https outside development mode, at public addresses checked once
and then connected to; redirects checked hop by hop and few; one deadline for the whole
download; the size cap on decoded bytes; and a failing source is that attachment's
failure, never the S3 breaker's. Real HTTP(S) stand-ins on 127.0.0.1/127.0.0.2, a fake
S3 store (no S3 server needed), and a resolver seam for names the tests make up."""

from __future__ import annotations

import datetime as dt
import ssl
import time
import tracemalloc
import zlib
from collections.abc import Sequence
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from prometheus_client import REGISTRY

from base.settings import Settings
from infra.spoke import BreakerOpen, Outcome, PermanentError, RetryableError, SpokeContext, SpokeSpec
from spokes.minio import PER_TENANT_BREAKER, SYSTEM
from spokes.minio.actions import SOURCE_SYSTEM, store_attachment
from spokes.minio.client import DECODE_STEP, AttachmentSource, BoundedDecoder
from spokes.minio.translate import address_refusal, host_allowed, source_refusal
from tests.standins.attachment_source import running_attachment_source

CDN = "cdn.example.test"
"""A name no DNS knows: the tests' resolver answers for it."""
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8
CONVERSATION = "5a3c0f0e-7d2b-5b9c-9a43-1f0e2d3c4b5a"


def settings(**changes) -> Settings:
    values = dict(
        spoke_max_attempts=2,
        breaker_fail_max=2,
        breaker_reset_s=30,
        http_timeout_s=5,
        attachment_timeout_s=5,
        attachment_hosts=("127.0.0.1", CDN),
        attachment_allowed_addresses=("127.0.0.1",),
        dev_mode=True,
    )
    return Settings(**{**values, **changes})


class Resolver:
    """A DNS that answers `answers` for every name, one list per lookup (the last repeats)."""

    def __init__(self, *answers: Sequence[str]):
        self.answers, self.lookups = list(answers), []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.lookups.append(host)
        return list(self.answers.pop(0) if len(self.answers) > 1 else self.answers[0])


@pytest.fixture
async def source():
    async with running_attachment_source() as running:
        yield running


@pytest.fixture
async def other_source():
    """A second source on another loopback address (Linux answers all of 127/8)."""
    async with running_attachment_source(host="127.0.0.2") as running:
        yield running


# --- which addresses and hosts (pure) ---


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("127.10.0.1", "loopback"),
        ("::1", "loopback"),
        ("10.0.0.5", "private"),
        ("172.16.3.4", "private"),
        ("192.168.1.1", "private"),
        ("fc00::1", "private"),
        ("169.254.10.1", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("169.254.169.254", "cloud metadata"),
        ("fd00:ec2::254", "cloud metadata"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("240.0.0.1", "private"),
        ("100.64.0.1", "not globally reachable"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:169.254.169.254", "cloud metadata"),
        ("2002:7f00:1::", "loopback"),
        ("64:ff9b::a00:5", "private"),
    ],
)
def test_addresses_that_are_not_public_are_refused(address, kind):
    assert address_refusal(address) == kind


@pytest.mark.parametrize("address", ["157.240.1.1", "31.13.64.1", "2a03:2880:f12f:83:face:b00c::25de", "64:ff9b::9df0:101"])
def test_public_addresses_are_allowed(address):
    assert address_refusal(address) is None


def test_only_the_exact_allowed_address_is_excepted_and_never_the_metadata_one():
    allowed = ["127.0.0.1", "169.254.169.254"]
    assert address_refusal("127.0.0.1", allowed) is None
    assert address_refusal("::ffff:127.0.0.1", allowed) is None  # the same address
    assert address_refusal("127.0.0.2", allowed) == "loopback"
    assert address_refusal("169.254.169.254", allowed) == "cloud metadata"


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("scontent-cdg4-1.xx.fbcdn.net", True),
        ("lookaside.fbsbx.com", True),
        ("LOOKASIDE.FBSBX.COM.", True),
        ("fbcdn.net", False),
        ("evilfbcdn.net", False),
        ("fbcdn.net.evil.test", False),
        ("127.0.0.1", False),
    ],
)
def test_hosts_match_the_allow_list_exactly_or_below_a_wildcard_domain(host, allowed):
    assert host_allowed(host, Settings().attachment_hosts) is allowed


def test_plain_http_needs_development_mode_and_other_schemes_are_never_fetched():
    hosts = ["127.0.0.1"]
    assert source_refusal("http", "127.0.0.1", hosts=hosts, allow_http=False)[0] == "source_not_https"
    assert source_refusal("http", "127.0.0.1", hosts=hosts, allow_http=True) is None
    assert source_refusal("https", "127.0.0.1", hosts=hosts, allow_http=False) is None
    assert source_refusal("file", "127.0.0.1", hosts=hosts, allow_http=True)[0] == "invalid_source_url"


# --- scheme, allow-list and addresses on the wire ---


async def test_plain_http_is_refused_outside_development_mode_without_a_request(source):
    source.state.add("photo.png", PNG, "image/png")
    with pytest.raises(PermanentError) as refused:
        await AttachmentSource(settings(dev_mode=False)).fetch(source.file_url("photo.png"), 10_000)
    assert refused.value.code == "source_not_https"
    assert source.state.requests == []


async def test_a_host_not_on_the_allow_list_is_refused_without_a_request(source):
    source.state.add("photo.png", PNG, "image/png")
    with pytest.raises(PermanentError) as refused:
        await AttachmentSource(settings(attachment_hosts=("*.fbcdn.net",))).fetch(source.file_url("photo.png"), 10_000)
    assert refused.value.code == "source_host_refused" and "127.0.0.1" in refused.value.reason
    assert source.state.requests == []


async def test_an_allowed_name_resolving_to_loopback_is_refused_without_the_development_exception(source):
    # localhost is on the allow-list, but what it resolves to (127.0.0.1, ::1) is not allowed.
    source.state.add("photo.png", PNG, "image/png")
    url = source.file_url("photo.png").replace("127.0.0.1", "localhost")
    fetch = AttachmentSource(settings(attachment_hosts=("localhost",), attachment_allowed_addresses=()))
    with pytest.raises(PermanentError) as refused:
        await fetch.fetch(url, 10_000)
    assert refused.value.code == "source_address_refused" and "loopback" in refused.value.reason
    assert source.state.requests == []


@pytest.mark.parametrize("private", ["10.0.0.5", "169.254.169.254", "::1"])
async def test_a_name_with_any_address_that_is_not_public_is_refused(private):
    resolver = Resolver(["157.240.1.1", private])
    with pytest.raises(PermanentError) as refused:
        await AttachmentSource(settings(), resolve=resolver).fetch(f"http://{CDN}/files/photo.png", 10_000)
    assert refused.value.code == "source_address_refused"


async def test_the_connection_goes_to_the_checked_address_not_to_a_second_dns_answer(source):
    # Rebinding: a first answer that passes the check, a second that would not.
    source.state.add("photo.png", PNG, "image/png")
    resolver = Resolver(["127.0.0.1"], ["169.254.169.254"])
    url = source.file_url("photo.png").replace("127.0.0.1", CDN)
    fetched = await AttachmentSource(settings(), resolve=resolver).fetch(url, 10_000)
    assert fetched.body == PNG
    assert resolver.lookups == [CDN]
    assert source.state.hosts == [f"{CDN}:{httpx.URL(url).port}"]  # the name, in the Host header


# --- https at the pinned address: the certificate is checked against the host name ---


def _certificates(tmp_path: Path, name: str) -> tuple[ssl.SSLContext, ssl.SSLContext, list[str]]:
    """A CA, a certificate for `name` signed by it; the server's context (recording the
    server names asked for) and a client context trusting only that CA."""
    now = dt.datetime.now(dt.UTC)

    def cert(subject: str, key, issuer_name, issuer_key, ca: bool) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(issuer_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(subject)]), critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    ca_cert = cert("test CA", ca_key, ca_name, ca_key, ca=True)
    leaf = cert(name, leaf_key, ca_name, ca_key, ca=False)
    pem = serialization.Encoding.PEM
    (tmp_path / "ca.pem").write_bytes(ca_cert.public_bytes(pem))
    (tmp_path / "leaf.pem").write_bytes(leaf.public_bytes(pem))
    (tmp_path / "leaf.key").write_bytes(
        leaf_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(tmp_path / "leaf.pem", tmp_path / "leaf.key")
    asked: list[str] = []
    server.sni_callback = lambda sock, server_name, context: asked.append(server_name)
    return server, ssl.create_default_context(cafile=str(tmp_path / "ca.pem")), asked


async def test_https_goes_to_the_pinned_address_with_the_host_name_as_server_name(tmp_path):
    server, client, asked = _certificates(tmp_path, CDN)
    async with running_attachment_source(ssl_context=server, url_host=CDN) as source:
        source.state.add("photo.png", PNG, "image/png")
        fetch = AttachmentSource(settings(dev_mode=False), resolve=Resolver(["127.0.0.1"]), verify=client)
        fetched = await fetch.fetch(source.file_url("photo.png"), 10_000)
    assert fetched.body == PNG and asked == [CDN]


async def test_https_with_a_certificate_for_another_name_is_not_fetched(tmp_path):
    server, client, _ = _certificates(tmp_path, "someone-else.example.test")
    async with running_attachment_source(ssl_context=server, url_host=CDN) as source:
        source.state.add("photo.png", PNG, "image/png")
        fetch = AttachmentSource(settings(dev_mode=False), resolve=Resolver(["127.0.0.1"]), verify=client)
        with pytest.raises(RetryableError) as failed:
            await fetch.fetch(source.file_url("photo.png"), 10_000)
    assert failed.value.code == "source_unreachable" and source.state.requests == []


# --- redirects ---


async def test_a_redirect_to_an_address_that_is_not_allowed_is_refused(source, other_source):
    # 127.0.0.2 is an allowed host name, but its address is not an allowed one.
    other_source.state.add("secret", b"internal", "text/plain")
    source.state.redirect("photo.png", other_source.file_url("secret"))
    fetch = AttachmentSource(settings(attachment_hosts=("127.0.0.1", "127.0.0.2")))
    with pytest.raises(PermanentError) as refused:
        await fetch.fetch(source.file_url("photo.png"), 10_000)
    assert refused.value.code == "source_address_refused" and refused.value.reason.startswith("redirect refused")
    assert other_source.state.requests == []


@pytest.mark.parametrize(
    ("location", "code"),
    [
        ("http://169.254.169.254/latest/meta-data/iam/security-credentials/", "source_address_refused"),
        ("http://internal.example.test/admin", "source_host_refused"),
        ("file:///etc/passwd", "invalid_source_url"),
    ],
)
async def test_a_redirect_is_checked_like_the_first_url(source, location, code):
    source.state.redirect("photo.png", location)
    fetch = AttachmentSource(settings(attachment_hosts=("127.0.0.1", "169.254.169.254")))
    with pytest.raises(PermanentError) as refused:
        await fetch.fetch(source.file_url("photo.png"), 10_000)
    assert refused.value.code == code


async def test_a_redirect_to_plain_http_is_refused_outside_development_mode(tmp_path, source):
    server, client, _ = _certificates(tmp_path, CDN)
    source.state.add("photo.png", PNG, "image/png")
    async with running_attachment_source(ssl_context=server, url_host=CDN) as tls:
        tls.state.redirect("photo.png", source.file_url("photo.png"))
        fetch = AttachmentSource(settings(dev_mode=False), resolve=Resolver(["127.0.0.1"]), verify=client)
        with pytest.raises(PermanentError) as refused:
            await fetch.fetch(tls.file_url("photo.png"), 10_000)
    assert refused.value.code == "source_not_https" and source.state.requests == []


async def test_three_redirects_are_followed_and_a_fourth_is_refused(source):
    source.state.add("photo.png", PNG, "image/png")
    for hop in range(4):
        source.state.redirect(f"hop{hop}", f"/files/hop{hop + 1}")
    source.state.redirect("hop4", "/files/photo.png")
    fetch = AttachmentSource(settings())

    assert (await fetch.fetch(source.file_url("hop2"), 10_000)).body == PNG  # hop2 → hop3 → hop4 → photo
    source.state.requests.clear()
    with pytest.raises(PermanentError) as refused:
        await fetch.fetch(source.file_url("hop1"), 10_000)  # hop1 → hop2 → hop3 → hop4 → (photo)
    assert refused.value.code == "source_redirect_loop"
    assert source.state.requests == ["/files/hop1", "/files/hop2", "/files/hop3", "/files/hop4"]


# --- one deadline, decoded size ---


async def test_a_slow_drip_is_cut_off_at_the_deadline_of_the_whole_download(source):
    # A byte every 0.1 s never trips a timeout per read (5 s) but takes 5 s in all.
    source.state.drip_interval_s = 0.1
    source.state.add("slow.bin", b"x" * 50)
    fetch = AttachmentSource(settings(attachment_timeout_s=0.5))
    started = time.monotonic()
    with pytest.raises(RetryableError) as failed:
        await fetch.fetch(source.file_url("slow.bin"), 10_000)
    assert failed.value.code == "source_timeout"
    assert time.monotonic() - started < 1.5


def gzip_of_zeros(size: int) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    mebibyte = bytes(1 << 20)
    return b"".join([*(packer.compress(mebibyte) for _ in range(size >> 20)), packer.flush()])


async def test_a_gzip_bomb_is_stopped_at_the_cap_without_being_expanded(source):
    bomb = gzip_of_zeros(50 << 20)
    cap = 1 << 20
    assert len(bomb) < cap  # its declared length passes the cap's first check
    source.state.add("bomb.png", bomb, "image/png", content_encoding="gzip")
    fetch = AttachmentSource(settings())
    tracemalloc.start()
    try:
        with pytest.raises(PermanentError) as refused:
            await fetch.fetch(source.file_url("bomb.png"), cap)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert refused.value.code == "too_large"
    assert peak < cap + 16 * DECODE_STEP + (4 << 20), f"{peak} bytes at the peak: the body was expanded"


@pytest.mark.parametrize("coding", ["gzip", "deflate", "raw deflate"])
async def test_a_compressed_attachment_within_the_cap_is_stored_decoded(source, coding):
    body = PNG * 200
    if coding == "gzip":
        sent = zlib.compress(body, wbits=zlib.MAX_WBITS | 16)
    else:
        sent = zlib.compress(body, wbits=zlib.MAX_WBITS if coding == "deflate" else -zlib.MAX_WBITS)
    source.state.add("photo.png", sent, "image/png", content_encoding=coding.split()[-1])
    fetched = await AttachmentSource(settings()).fetch(source.file_url("photo.png"), len(body))
    assert fetched.body == body


def test_a_coding_that_was_not_asked_for_is_refused():
    with pytest.raises(PermanentError) as refused:
        BoundedDecoder("br")
    assert refused.value.code == "source_undecodable"
    with pytest.raises(PermanentError):
        BoundedDecoder("gzip, gzip")


# --- a failing source is that attachment's failure, not S3's ---


class FakeS3Store:
    """spokes.minio.client.S3Store's interface, in memory."""

    def __init__(self):
        self.objects: dict[tuple[str, str], tuple[bytes, str, dict]] = {}
        self.calls = 0

    async def ensure_bucket(self, tenant_id: str) -> str:
        self.calls += 1
        return f"poseidon-t-{tenant_id}"

    async def head_object(self, bucket: str, key: str) -> dict | None:
        self.calls += 1
        found = self.objects.get((bucket, key))
        if found is None:
            return None
        return {"ContentLength": len(found[0]), "ContentType": found[1], "Metadata": found[2]}

    async def put_object(self, bucket: str, key: str, body: bytes, content_type: str, metadata) -> str:
        self.calls += 1
        self.objects[(bucket, key)] = (body, content_type, dict(metadata))
        return "etag"

    async def delete_object(self, bucket: str, key: str) -> None:
        self.calls += 1
        self.objects.pop((bucket, key), None)


def spoke_context(name: str, **changes) -> SpokeContext:
    async def handle(ctx, event_name, record):
        return Outcome("store_attachment")

    spec = SpokeSpec(name, SYSTEM, ("message.events",), lambda n, r: False, handle, per_tenant_breaker=PER_TENANT_BREAKER)
    return SpokeContext(spec, settings(**changes), codec=None, commands=None)


def failed_calls(spoke: str) -> dict[str, float]:
    """poseidon_spoke_calls_total of `spoke` that did not succeed, by system."""
    counted: dict[str, float] = {}
    for metric in REGISTRY.collect():
        for sample in metric.samples:
            labels = sample.labels
            if sample.name == "poseidon_spoke_calls_total" and labels.get("spoke") == spoke and labels["outcome"] != "ok":
                counted[labels["system"]] = counted.get(labels["system"], 0) + sample.value
    return counted


async def test_attachment_source_failures_leave_the_s3_breaker_closed_and_unblamed(source, request):
    spoke = f"minio-{request.node.name[:40]}"
    # Two tries per call; the source's breaker opens at its fourth failure (two slow, two 503).
    ctx = spoke_context(spoke, attachment_timeout_s=0.3, breaker_fail_max=4)
    store = FakeS3Store()
    source.state.add("photo.png", PNG, "image/png")
    source.state.add("huge.bin", b"x" * 20_000)
    source.state.add("slow.bin", b"x" * 20)
    source.state.redirect("inside", "http://10.0.0.5/admin")

    async def store_from(url: str, index: int, max_bytes: int = 10_000) -> Outcome:
        return await store_attachment(
            ctx,
            store,
            tenant_id="acme",
            conversation_id=CONVERSATION,
            message_id="m_1",
            index=index,
            source_url=url,
            max_bytes=max_bytes,
        )

    refusals = [
        ("https://internal.example.test/x.png", "source_host_refused"),
        (source.file_url("inside"), "source_host_refused"),
        (source.file_url("missing.png"), "source_not_found"),
        (source.file_url("huge.bin"), "too_large"),
    ]
    for index, (url, code) in enumerate(refusals):
        with pytest.raises(PermanentError) as refused:
            await store_from(url, index)
        assert refused.value.code == code
    source.state.drip_interval_s = 0.05
    with pytest.raises(RetryableError) as slow:
        await store_from(source.file_url("slow.bin"), 10)
    source.state.drip_interval_s = 0
    source.state.fail(503, count=10)
    with pytest.raises(BreakerOpen) as opened:
        await store_from(source.file_url("photo.png"), 11)

    assert slow.value.code == "source_timeout"
    assert opened.value.reason.startswith(f"{SOURCE_SYSTEM} breaker opened") and SYSTEM not in opened.value.reason
    assert ctx.breaker("acme").current_state == "closed"  # the S3 one
    assert {system for system, *_ in ctx.breaker_changes} == {SOURCE_SYSTEM}
    assert SYSTEM not in failed_calls(spoke) and failed_calls(spoke)[SOURCE_SYSTEM] >= 3

    # S3 itself was never in doubt: once the source answers, the attachment is stored.
    source.state.failures.clear()
    ctx.breaker("acme", SOURCE_SYSTEM).close()
    stored = await store_from(source.file_url("photo.png"), 11)
    assert stored.succeeded and store.objects[("poseidon-t-acme", stored.external_id)][0] == PNG
    await ctx.http.aclose()
