"""The attachment store's naming and metadata rules: a valid bucket per tenant that no
other tenant can get, stable keys from platform ids and URLs, metadata without the
signed URL, and content types sniffed when the platform says nothing useful."""

from __future__ import annotations

import hashlib
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spokes.minio.translate import (
    attachment_kind,
    attachment_record,
    bucket_for_tenant,
    choose_content_type,
    filename_from_url,
    is_valid_bucket_name,
    normalise_content_type,
    object_key,
    object_metadata,
    safe_filename,
    safe_segment,
    sniff_content_type,
    stored_data,
    stored_data_from_head,
)

# A Facebook attachment URL as it arrives in a webhook (signed, expiring query).
FB_URL = (
    "https://scontent.xx.fbcdn.net/v/t1.15752-9/471234567_1234567890123456_789_n.jpg"
    "?_nc_cat=105&ccb=1-7&_nc_sid=fc17b8&_nc_ohc=AbCdEf&oh=03_Q7cD1234&oe=67A1B2C3"
)
CONVERSATION = "5a3c0f0e-7d2b-5b9c-9a43-1f0e2d3c4b5a"
FB_MID = "m_Jf3kQ0vYVxSDsZb3u1w2hLrD9hV1Ztq3bX8fQeYxk3lYtqkUuN4bX-y6F8u0Gh2cQ"


def test_a_slug_tenant_gets_its_bucket_by_name():
    assert bucket_for_tenant("acme") == "poseidon-t-acme"
    assert bucket_for_tenant("acme-eu-2") == "poseidon-t-acme-eu-2"


def test_a_tenant_id_that_is_no_bucket_name_gets_a_hashed_one():
    name = bucket_for_tenant("Acme_Corp")
    digest = hashlib.sha256(b"Acme_Corp").hexdigest()[:16]
    assert name == f"poseidon-t-acme-corp--{digest}"
    assert is_valid_bucket_name(name)


def test_a_long_tenant_id_is_shortened_with_a_hash_and_stays_valid():
    tenant = "a" * 63
    name = bucket_for_tenant(tenant)
    assert len(name) <= 63 and is_valid_bucket_name(name)
    assert name != bucket_for_tenant("a" * 62)


def test_tenants_that_look_alike_never_share_a_bucket():
    names = {bucket_for_tenant(t) for t in ("acme", "Acme", "acme--x", "acme-x", "acme_x", "acme.x")}
    assert len(names) == 6


def test_a_missing_tenant_id_names_no_bucket():
    with pytest.raises(ValueError):
        bucket_for_tenant("")


@given(st.text(min_size=1, max_size=200))
def test_every_tenant_id_maps_to_a_valid_bucket_name(tenant_id):
    assert is_valid_bucket_name(bucket_for_tenant(tenant_id))


@given(
    st.lists(
        st.text(alphabet=string.ascii_letters + string.digits + "-_.", min_size=1, max_size=80),
        min_size=2,
        max_size=2,
        unique=True,
    )
)
def test_two_tenant_ids_give_two_buckets(pair):
    a, b = pair
    assert bucket_for_tenant(a) != bucket_for_tenant(b)


def test_the_key_is_conversation_message_index_and_file_name():
    key = object_key(CONVERSATION, FB_MID, 0, filename_from_url(FB_URL))
    assert key == f"{CONVERSATION}/{FB_MID}/0-471234567_1234567890123456_789_n.jpg"


def test_the_key_ignores_the_signed_query_so_a_redelivery_maps_to_the_same_object():
    other_signature = FB_URL.replace("oh=03_Q7cD1234", "oh=03_ZZZZ9999").replace("oe=67A1B2C3", "oe=67FFFFFF")
    assert object_key(CONVERSATION, FB_MID, 1, filename_from_url(FB_URL)) == object_key(
        CONVERSATION, FB_MID, 1, filename_from_url(other_signature)
    )


def test_a_message_id_with_unsafe_characters_becomes_a_readable_part_and_a_hash():
    segment = safe_segment("mid.$cAAJsujCd2ORj/../x")
    assert "/" not in segment and "$" not in segment and "~" in segment
    assert segment != safe_segment("mid.$cAAJsujCd2ORj/../y")
    assert safe_segment("..") not in (".", "..")


def test_file_names_are_made_safe_and_keep_their_extension():
    assert safe_filename("Quarterly report (final).PDF") == "Quarterly_report_final_.PDF"
    assert safe_filename("../../etc/passwd") == "etc_passwd"
    assert safe_filename("") == "attachment"
    assert safe_filename(".hidden") == "hidden"
    long = safe_filename("x" * 300 + ".jpeg")
    assert len(long) <= 100 and long.endswith(".jpeg")


def test_a_url_without_a_file_name_gives_a_default_one():
    assert object_key(CONVERSATION, "m1", 2, filename_from_url("https://cdn.example/")) == f"{CONVERSATION}/m1/2-attachment"
    assert filename_from_url("https://cdn.example/a%20b.png?x=1") == "a b.png"


def test_keys_fit_the_message_hubs_limit_whatever_the_ids():
    key = object_key("c" * 400, "m" * 300, 19, "f" * 400 + ".png")
    assert len(key) <= 500 and key.isprintable()


def test_a_negative_index_is_refused():
    with pytest.raises(ValueError):
        object_key(CONVERSATION, "m1", -1, "a.png")


def test_the_metadata_names_the_tenant_conversation_and_message_but_not_the_url():
    metadata = object_metadata(
        tenant_id="acme",
        conversation_id=CONVERSATION,
        message_id=FB_MID,
        source_url=FB_URL,
        content_type="image/jpeg",
        size=1234,
        sha256="ab" * 32,
    )
    assert metadata == {
        "tenant": "acme",
        "conversation": CONVERSATION,
        "message-id": FB_MID,
        "source-url-sha256": hashlib.sha256(FB_URL.encode()).hexdigest(),
        "content-type": "image/jpeg",
        "size": "1234",
        "sha256": "ab" * 32,
    }
    assert not any("oh=" in value or "fbcdn" in value for value in metadata.values())


def test_metadata_values_are_header_safe():
    metadata = object_metadata(
        tenant_id="acme", conversation_id="c", message_id="mé\nx", source_url="u", content_type="text/plain", size=1, sha256="0"
    )
    assert metadata["message-id"] == "m%C3%A9%0Ax"


@pytest.mark.parametrize(
    ("head", "filename", "expected"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00", "", "image/png"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "x.bin", "image/jpeg"),
        (b"GIF89a\x01\x00", "", "image/gif"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "", "image/webp"),
        (b"RIFF\x00\x00\x00\x00WAVEfmt ", "", "audio/wav"),
        (b"%PDF-1.7\n", "", "application/pdf"),
        (b"\x00\x00\x00\x18ftypmp42", "", "video/mp4"),
        (b"\x00\x00\x00\x14ftypqt  ", "", "video/quicktime"),
        (b"\x00\x00\x00\x18ftypheic", "", "image/heic"),
        (b"ID3\x04\x00", "", "audio/mpeg"),
        (b"OggS\x00\x02", "", "audio/ogg"),
        (b"PK\x03\x04\x14\x00", "report.docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
        (b"PK\x03\x04\x14\x00", "bundle.zip", "application/zip"),
        (b"plain words", "notes.txt", "text/plain"),
        (b"plain words", "noext", ""),
    ],
)
def test_content_types_are_sniffed_from_magic_bytes_then_the_extension(head, filename, expected):
    assert sniff_content_type(head, filename) == expected


def test_a_declared_content_type_wins_unless_it_says_nothing():
    png = b"\x89PNG\r\n\x1a\n"
    assert choose_content_type("image/jpeg; charset=binary", png) == "image/jpeg"
    assert choose_content_type("application/octet-stream", png) == "image/png"
    assert choose_content_type("", png) == "image/png"
    assert choose_content_type("not a type", b"??") == "application/octet-stream"
    assert normalise_content_type("Image/PNG") == "image/png"


def test_the_kind_follows_the_content_type():
    assert [attachment_kind(t) for t in ("image/png", "video/mp4", "audio/ogg", "application/pdf")] == [
        "image",
        "video",
        "audio",
        "file",
    ]


def test_an_outcome_says_where_the_object_is_and_what_it_is_never_its_bytes():
    data = stored_data(bucket="poseidon-t-acme", key="c/m/0-a.png", size=10, content_type="image/png", sha256="ff")
    assert data == {
        "bucket": "poseidon-t-acme",
        "key": "c/m/0-a.png",
        "size": "10",
        "content_type": "image/png",
        "sha256": "ff",
        "kind": "image",
    }
    assert all(isinstance(v, str) for v in data.values())
    assert attachment_record(data) == {"kind": "image", "key": "c/m/0-a.png", "content_type": "image/png", "size_bytes": 10}


def test_an_existing_objects_head_reads_back_as_the_same_record():
    head = {"ContentLength": 10, "ContentType": "image/png", "Metadata": {"sha256": "ff", "tenant": "acme"}}
    assert stored_data_from_head("poseidon-t-acme", "c/m/0-a.png", head) == stored_data(
        bucket="poseidon-t-acme", key="c/m/0-a.png", size=10, content_type="image/png", sha256="ff"
    )
