"""The ingress's cheaper stand-ins for library calls on its hot path give what
the library calls give."""

from __future__ import annotations

import uuid

from aiokafka.partitioner import DefaultPartitioner

from infra.ingress import KeyPartitioner, new_id


def test_new_ids_are_random_uuid4_text():
    ids = [new_id() for _ in range(2000)]
    for text in ids:
        parsed = uuid.UUID(text)
        assert str(parsed) == text
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
    assert len(set(ids)) == len(ids)


def test_the_key_partitioner_picks_the_default_partitioners_partition_for_every_key():
    remembering, default = KeyPartitioner(size=50), DefaultPartitioner()
    keys = [f"facebook/104857600777/{24_000_000_000_000_000 + i}".encode() for i in range(120)] + [b"", b"a", b"ab", b"abc"]
    for partitions in (list(range(1)), list(range(6)), list(range(12))):
        for _ in range(2):  # first computed, then remembered (and forgotten past `size`)
            for key in keys:
                assert remembering(key, partitions, partitions) == default(key, partitions, partitions)
    assert len(remembering._hashes) <= 50


def test_a_record_without_key_goes_to_any_available_partition():
    assert KeyPartitioner()(None, [0, 1, 2], [2]) == 2
