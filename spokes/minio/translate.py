"""Pure naming and metadata rules of the attachment store: the bucket of a tenant, the
key of an attachment, the user metadata stored with it, the content type when the
platform gives none, what an outcome may say about a stored object (never its bytes),
and which attachment sources may be fetched (allow-listed hosts, public addresses).
No I/O: nothing here imports an S3 client, httpx or aiohttp, nor resolves a name."""

from __future__ import annotations

import hashlib
import ipaddress
import re
import string
from collections.abc import Iterable, Mapping
from urllib.parse import quote, unquote, urlsplit

BUCKET_PREFIX = "poseidon-t-"
MAX_BUCKET = 63
HASH_MARK = "--"
"""Separates a bucket name's readable part from its hash. A name without a hash never
contains it (hyphen runs are collapsed), so the mapping tenant → bucket stays one-to-one."""
SEGMENT_HASH_MARK = "~"
"""Same idea for key segments: `~` is never kept from an id or file name."""

GENERIC_CONTENT_TYPES = frozenset(
    {"", "application/octet-stream", "binary/octet-stream", "application/binary", "application/unknown", "application/x-unknown"}
)
FALLBACK_CONTENT_TYPE = "application/octet-stream"
_CONTENT_TYPE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}$")
_SAFE_SEGMENT = re.compile(r"[^A-Za-z0-9._-]+")
_IPV4 = re.compile(r"^\d+\.\d+\.\d+\.\d+$")
# Printable ASCII except '%' (the escape itself): header-safe as it stands.
_METADATA_SAFE = "".join(c for c in string.printable if c not in "%\t\n\r\x0b\x0c" and not c.isalnum())

MAX_ID_SEGMENT = 120
MAX_FILENAME = 100
DEFAULT_FILENAME = "attachment"

# (offset, magic) → content type; the first match wins, so longer signatures come first.
_MAGIC: tuple[tuple[int, bytes, str], ...] = (
    (0, b"\x89PNG\r\n\x1a\n", "image/png"),
    (0, b"\xff\xd8\xff", "image/jpeg"),
    (0, b"GIF87a", "image/gif"),
    (0, b"GIF89a", "image/gif"),
    (0, b"%PDF-", "application/pdf"),
    (0, b"OggS", "audio/ogg"),
    (0, b"\x1aE\xdf\xa3", "video/webm"),
    (0, b"ID3", "audio/mpeg"),
    (0, b"PK\x03\x04", "application/zip"),
    (0, b"BM", "image/bmp"),
)
_RIFF = {b"WEBP": "image/webp", b"WAVE": "audio/wav", b"AVI ": "video/x-msvideo"}
_FTYP = {b"qt  ": "video/quicktime", b"M4A ": "audio/mp4", b"heic": "image/heic", b"heix": "image/heic", b"mif1": "image/heif"}
_EXTENSIONS = {
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "png": "image/png",
    "gif": "image/gif",
    "webp": "image/webp",
    "bmp": "image/bmp",
    "heic": "image/heic",
    "pdf": "application/pdf",
    "mp4": "video/mp4",
    "mov": "video/quicktime",
    "webm": "video/webm",
    "mp3": "audio/mpeg",
    "m4a": "audio/mp4",
    "aac": "audio/aac",
    "ogg": "audio/ogg",
    "oga": "audio/ogg",
    "wav": "audio/wav",
    "txt": "text/plain",
    "csv": "text/csv",
    "json": "application/json",
    "zip": "application/zip",
    "doc": "application/msword",
    "xls": "application/vnd.ms-excel",
    "ppt": "application/vnd.ms-powerpoint",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
}


def _digest(value: str, length: int = 16) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()[:length]


def bucket_for_tenant(tenant_id: str, prefix: str = BUCKET_PREFIX) -> str:
    """`poseidon-t-<tenant>` for a tenant slug; anything that would not survive as a valid
    S3 bucket name as it stands (upper case, other characters, too long) becomes
    `poseidon-t-<readable part>--<hash of the tenant id>`, so two tenants never share a bucket."""
    if not isinstance(tenant_id, str) or not tenant_id:
        raise ValueError("a tenant id is required to name its bucket")
    readable = re.sub(r"[^a-z0-9]+", "-", tenant_id.lower()).strip("-")
    name = f"{prefix}{readable}"
    if readable == tenant_id and len(name) <= MAX_BUCKET:
        return name
    digest = _digest(tenant_id)
    room = MAX_BUCKET - len(prefix) - len(HASH_MARK) - len(digest)
    readable = readable[:room].strip("-")
    return f"{prefix}{readable}{HASH_MARK}{digest}" if readable else f"{prefix}{digest}"


def is_valid_bucket_name(name: str) -> bool:
    """S3's general-purpose bucket naming rules (the subset without dots that we use)."""
    return (
        3 <= len(name) <= MAX_BUCKET
        and re.fullmatch(r"[a-z0-9][a-z0-9-]*[a-z0-9]", name) is not None
        and not name.startswith(("xn--", "sthree-", "amzn-s3-demo-"))
        and not name.endswith(("-s3alias", "--ol-s3", "--x-s3", "--table-s3"))
        and not _IPV4.match(name)
    )


def safe_segment(value: str, max_len: int = MAX_ID_SEGMENT) -> str:
    """One key segment from an outside id: kept as is when it is already short and made of
    `A-Za-z0-9._-` (and not `.` or `..`); otherwise a readable part plus `~<hash>`."""
    if not isinstance(value, str) or not value:
        raise ValueError("a key segment needs a non-empty value")
    if len(value) <= max_len and not _SAFE_SEGMENT.search(value) and value not in (".", ".."):
        return value
    digest = _digest(value)
    readable = _SAFE_SEGMENT.sub("_", value).strip("._")[: max_len - len(digest) - 1]
    return f"{readable}{SEGMENT_HASH_MARK}{digest}" if readable else digest


def filename_from_url(url: str) -> str:
    """The last path segment of the source URL (its query, often a signature, never counts)."""
    path = urlsplit(url).path
    return unquote(path.rsplit("/", 1)[-1]) if path else ""


def safe_filename(name: str) -> str:
    """A file name fit for a key: `A-Za-z0-9._-` only, at most 100 characters with the
    extension kept, never hidden (leading dot) or empty."""
    base = _SAFE_SEGMENT.sub("_", name or "").strip("._")
    if not base:
        return DEFAULT_FILENAME
    if len(base) > MAX_FILENAME:
        stem, dot, ext = base.rpartition(".")
        ext = ext[:10] if dot and stem else ""
        base = f"{base[: MAX_FILENAME - len(ext) - 1].rstrip('._')}.{ext}" if ext else base[:MAX_FILENAME]
    return base


def object_key(conversation_id: str, message_id: str, index: int, filename: str) -> str:
    """`<conversation>/<message>/<index>-<file name>`: the same attachment of the same
    message always gets the same key, so storing it again overwrites nothing new."""
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise ValueError(f"attachment index must be a non-negative integer, not {index!r}")
    return f"{safe_segment(conversation_id)}/{safe_segment(message_id)}/{index}-{safe_filename(filename)}"


def normalise_content_type(header: str | None) -> str:
    """`Image/JPEG; charset=x` → `image/jpeg`; anything that is no media type → ''."""
    value = (header or "").split(";", 1)[0].strip().lower()
    return value if _CONTENT_TYPE.match(value) else ""


def sniff_content_type(head: bytes, filename: str = "") -> str:
    """The content type told by the first bytes, else by the file name's extension, else ''."""
    if head[:4] == b"RIFF" and head[8:12] in _RIFF:
        return _RIFF[head[8:12]]
    if head[4:8] == b"ftyp":
        return _FTYP.get(head[8:12], "video/mp4")
    for offset, magic, content_type in _MAGIC:
        if head[offset : offset + len(magic)] == magic:
            by_name = _by_extension(filename)
            # A zip is also what docx/xlsx/pptx are: the extension says which.
            if content_type == "application/zip" and by_name.startswith("application/vnd.openxmlformats"):
                return by_name
            return content_type
    if head[:2] in (b"\xff\xfb", b"\xff\xf3", b"\xff\xf2"):
        return "audio/mpeg"
    return _by_extension(filename)


def _by_extension(filename: str) -> str:
    stem, dot, ext = (filename or "").rpartition(".")
    return _EXTENSIONS.get(ext.lower(), "") if dot and stem else ""


def choose_content_type(declared: str | None, head: bytes, filename: str = "") -> str:
    """The platform's content type when it names one; sniffed when it says nothing useful."""
    normal = normalise_content_type(declared)
    if normal not in GENERIC_CONTENT_TYPES:
        return normal
    return sniff_content_type(head, filename) or FALLBACK_CONTENT_TYPE


def attachment_kind(content_type: str) -> str:
    """The Message hub's attachment kind: image, video, audio or file."""
    major = content_type.split("/", 1)[0]
    return major if major in ("image", "video", "audio") else "file"


def _metadata_value(value: str) -> str:
    return quote(value, safe=_METADATA_SAFE)


def object_metadata(
    *, tenant_id: str, conversation_id: str, message_id: str, source_url: str, content_type: str, size: int, sha256: str
) -> dict[str, str]:
    """User metadata stored with the object (`x-amz-meta-*`). The source URL itself is not
    kept — platform URLs carry signatures — only its SHA-256."""
    return {
        "tenant": _metadata_value(tenant_id),
        "conversation": _metadata_value(conversation_id),
        "message-id": _metadata_value(message_id),
        "source-url-sha256": hashlib.sha256(source_url.encode("utf-8")).hexdigest(),
        "content-type": content_type,
        "size": str(size),
        "sha256": sha256,
    }


def stored_data(*, bucket: str, key: str, size: int, content_type: str, sha256: str) -> dict[str, str]:
    """What an outcome event says about a stored attachment: where it is and what it is."""
    return {
        "bucket": bucket,
        "key": key,
        "size": str(size),
        "content_type": content_type,
        "sha256": sha256,
        "kind": attachment_kind(content_type),
    }


def stored_data_from_head(bucket: str, key: str, head: Mapping[str, object]) -> dict[str, str]:
    """The same record read back from an existing object's HEAD answer (size and content
    type from S3 itself, the checksum from the metadata we stored with it)."""
    metadata = head.get("Metadata") or {}
    content_type = normalise_content_type(str(head.get("ContentType") or "")) or FALLBACK_CONTENT_TYPE
    return stored_data(
        bucket=bucket,
        key=key,
        size=int(head.get("ContentLength") or 0),
        content_type=content_type,
        sha256=str(metadata.get("sha256", "")) if isinstance(metadata, Mapping) else "",
    )


def attachment_record(data: Mapping[str, str]) -> dict[str, object]:
    """The attachment as the Message hub records it (`RecordInboundMessage.attachments`)."""
    return {"kind": data["kind"], "key": data["key"], "content_type": data["content_type"], "size_bytes": int(data["size"])}


METADATA_ADDRESSES = frozenset({ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")})
"""Cloud instance metadata (AWS, GCP and Azure share the IPv4 one; AWS has the IPv6 one):
it hands out the machine's credentials, so it is refused even when listed as allowed."""
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_REFUSED_KINDS = ("unspecified", "loopback", "link_local", "multicast", "private", "reserved")


def host_allowed(host: str, patterns: Iterable[str]) -> bool:
    """`host` is one of `patterns`: equal to an exact host, or below the domain of a
    `*.domain` pattern (`a.fbcdn.net` and `a.b.fbcdn.net` for `*.fbcdn.net`, never
    `fbcdn.net` itself, nor `evilfbcdn.net`)."""
    host = host.lower().rstrip(".")
    for pattern in patterns:
        pattern = pattern.lower().rstrip(".")
        if pattern.startswith("*."):
            if host.endswith(pattern[1:]) and len(host) > len(pattern) - 1:
                return True
        elif host == pattern:
            return True
    return False


def source_refusal(scheme: str, host: str, *, hosts: Iterable[str], allow_http: bool) -> tuple[str, str] | None:
    """Why an attachment URL of this scheme and host may not be fetched, as (error code,
    reason); None when it may. The reason names the host (no secret), never the URL (signed)."""
    if scheme not in ("http", "https") or not host:
        return "invalid_source_url", "attachment source must be an http(s) URL"
    if scheme == "http" and not allow_http:
        return "source_not_https", f"attachment source {host} is plain http: only https outside development mode"
    if not host_allowed(host, hosts):
        return "source_host_refused", f"attachment source {host} is not an allowed attachment host"
    return None


def address_refusal(address: str, allowed: Iterable[str] = ()) -> str | None:
    """What kind of address `address` is when attachments may not be fetched from it
    (`loopback`, `private`, `cloud metadata`, …); None when they may: a globally reachable
    address, or one of `allowed` (exact addresses, for the stand-ins of development).
    An IPv4 address inside an IPv6 one (mapped, 6to4, Teredo, NAT64) is judged as the
    IPv4 address it reaches, so `::ffff:127.0.0.1` is loopback."""
    ip = _unmapped(ipaddress.ip_address(address.split("%", 1)[0]))  # a zone id only scopes link-local
    # NAT64 (DNS64 networks) reaches exactly its IPv4 address; the others reach both.
    reached = [*_embedded_ipv4(ip)] if ip in _NAT64 else [ip, *_embedded_ipv4(ip)]
    if any(a in METADATA_ADDRESSES for a in reached):
        return "cloud metadata"
    if ip in {_unmapped(ipaddress.ip_address(a)) for a in allowed}:
        return None
    for a in reached:
        for kind in _REFUSED_KINDS:
            if getattr(a, f"is_{kind}"):
                return kind.replace("_", "-")
        if not a.is_global:  # e.g. shared address space 100.64.0.0/10 (carrier NAT)
            return "not globally reachable"
    return None


def _unmapped(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return (ip.ipv4_mapped or ip) if isinstance(ip, ipaddress.IPv6Address) else ip


def _embedded_ipv4(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    if not isinstance(ip, ipaddress.IPv6Address):
        return []
    embedded = [ip.sixtofour, *(ip.teredo or ())]
    if ip in _NAT64:
        embedded.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return [a for a in embedded if a is not None]
