"""The dead-letter record every consumer writes to `<source topic>.dlq`: the
original key and bytes, whole, with the reason and where they came from."""

from __future__ import annotations

from datetime import UTC, datetime

from schemas.codec import Codec

DEAD_LETTER_SCHEMA = "poseidon.DeadLetter"
MAX_REASON = 2000


def dead_letter(
    codec: Codec,
    *,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    reason: str,
    error_type: str,
    processor: str,
) -> tuple[bytes, list[tuple[str, bytes]]]:
    """Encoded `poseidon.DeadLetter` value and its headers (reason copied for tooling)."""
    record = {
        "source_topic": topic,
        "source_partition": partition,
        "source_offset": offset,
        "reason": reason[:MAX_REASON],
        "error_type": error_type,
        "key": key,
        "payload": value or b"",
        "processor": processor,
        "failed_at": datetime.now(UTC),
    }
    headers = [("content-type", b"application/vnd.poseidon.avro"), ("reason", reason[:500].encode())]
    return codec.encode(DEAD_LETTER_SCHEMA, record), headers
