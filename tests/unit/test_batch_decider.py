"""A partition's batch decided with no broker: the states it leaves (one per
aggregate), duplicates inside and across batches, dead letters in place, a
handler that changed its aggregate before refusing, and the bounded dedup window."""

from __future__ import annotations

import dataclasses
import hashlib
import uuid

from hubs.wallet.commands import CreditFunds, DebitFunds, OpenWallet
from hubs.wallet.hub import HUB
from infra.batch import AggregateCache, BatchDecider, Incoming, Outgoing, PartitionMemory
from infra.command_client import new_meta
from infra.dlq import DeadLetters
from infra.hub import command_to_record
from schemas.codec import Catalog, Codec
from schemas.contracts import Rejected

CODEC = Codec(Catalog.load())
TOPICS = {"events": "wallet.events", "command-results": "wallet.command-results"}
TENANT = "tenant-a"


def decider(hub=HUB, cache_size: int = 100) -> BatchDecider:
    return BatchDecider(hub, CODEC, TOPICS, DeadLetters(None, CODEC, "test", "wallet.commands.dlq"), AggregateCache(cache_size))


class Partition:
    """Command records of one partition and what the processor would remember."""

    def __init__(self, d: BatchDecider, window_s: float = 3600, max_outcomes: int = 1000):
        self.d, self.memory, self.offset, self.stored = d, PartitionMemory(window_s, max_outcomes), 0, {}

    def record(self, command) -> Incoming:
        self.offset += 1
        value = CODEC.encode(command.avro_name(), command_to_record(command))
        return Incoming("wallet.commands", 0, self.offset, command.meta.aggregate_id.encode(), value)

    def run(self, *records: Incoming):
        items = [self.d.parse(r) for r in records]
        stored = {
            i.outcome_key: self.stored[i.outcome_key]
            for i in items
            if not isinstance(i, Outgoing) and i.outcome_key in self.stored
        }
        batch = self.d.decide(self.memory, items, stored)
        states = self.d.state_records(batch, "changelog")
        offsets = {index: 1000 + index for index in range(len(batch.outgoing))}
        for okey, index in batch.results.items():
            self.stored[okey] = batch.outgoing[index].value
        self.d.committed(self.memory, batch, {r.key: r.value for r in states}, offsets)
        return batch, states


def results(batch) -> list[dict]:
    return [CODEC.decode(o.value).record for o in batch.outgoing if o.topic == TOPICS["command-results"]]


def command(cls, wallet: str, command_id: str | None = None, **payload):
    return cls(meta=new_meta(wallet, TENANT, command_id=command_id), **payload)


def test_a_batch_writes_one_state_record_per_aggregate_however_many_commands_changed_it():
    p = Partition(decider())
    w1, w2 = str(uuid.uuid4()), str(uuid.uuid4())
    batch, states = p.run(
        p.record(command(OpenWallet, w1, currency="EUR")),
        p.record(command(CreditFunds, w1, amount=5, reference="")),
        p.record(command(CreditFunds, w1, amount=7, reference="")),
        p.record(command(OpenWallet, w2, currency="EUR")),
    )
    assert [r["outcome"] for r in results(batch)] == ["ACCEPTED"] * 4
    assert sorted(s.key for s in states) == sorted([w1.encode(), w2.encode()])
    assert [r["version"] for r in results(batch)][:3] == [1, 2, 3]
    stored, _ = p.d.snapshots.loads(p.memory.states[w1.encode()])
    assert stored.balance == 12


def test_the_hash_chain_runs_across_commands_of_one_batch():
    p = Partition(decider())
    w = str(uuid.uuid4())
    batch, _ = p.run(p.record(command(OpenWallet, w, currency="EUR")), p.record(command(CreditFunds, w, amount=5, reference="")))
    events = [o for o in batch.outgoing if o.topic == TOPICS["events"]]
    second = CODEC.decode(events[1].value).record
    assert second["envelope"]["previous_hash"] == hashlib.sha256(events[0].value).hexdigest()


def test_a_repeated_command_id_in_the_same_batch_and_in_a_later_one_gets_the_first_outcome_and_changes_nothing():
    p = Partition(decider())
    w = str(uuid.uuid4())
    credit = command(CreditFunds, w, command_id=str(uuid.uuid4()), amount=5, reference="")
    batch, _ = p.run(p.record(command(OpenWallet, w, currency="EUR")), p.record(credit), p.record(credit))
    first, again = results(batch)[1:]
    assert (first["duplicate"], again["duplicate"]) == (False, True)
    assert again["event_ids"] == first["event_ids"]
    later, _ = p.run(p.record(credit))
    assert results(later)[0]["duplicate"] is True and results(later)[0]["event_ids"] == first["event_ids"]
    assert p.d.snapshots.loads(p.memory.states[w.encode()])[0].balance == 5


def test_a_rejection_does_not_stop_the_batch_and_garbage_is_dead_lettered_in_its_place():
    p = Partition(decider())
    w = str(uuid.uuid4())
    garbage = Incoming("wallet.commands", 0, 99, b"k", b"\x00not avro")
    batch, _ = p.run(
        p.record(command(OpenWallet, w, currency="EUR")),
        p.record(command(DebitFunds, w, amount=50, reference="")),
        garbage,
        p.record(command(CreditFunds, w, amount=3, reference="")),
    )
    assert [o.topic for o in batch.outgoing if o.topic != TOPICS["events"]] == [
        TOPICS["command-results"],
        TOPICS["command-results"],
        "wallet.commands.dlq",
        TOPICS["command-results"],
    ]
    assert [r["outcome"] for r in results(batch)] == ["ACCEPTED", "REJECTED", "ACCEPTED"]
    assert batch.counts == {"accepted": 2, "rejected": 1, "dead_lettered": 1}


def test_a_handler_that_changed_the_aggregate_before_refusing_leaves_the_state_as_it_was():
    def credit_then_refuse(wallet, cmd):
        if isinstance(cmd, DebitFunds) and cmd.reference == "half-done":
            wallet.credit(cmd.meta.command_id, 1000, "never")
            raise Rejected("refused after changing the wallet")
        return HUB.handle(wallet, cmd)

    d = decider(dataclasses.replace(HUB, handle=credit_then_refuse))
    p = Partition(d)
    w = str(uuid.uuid4())
    p.run(p.record(command(OpenWallet, w, currency="EUR")))
    batch, _ = p.run(
        p.record(command(CreditFunds, w, amount=5, reference="")),
        p.record(command(DebitFunds, w, amount=1, reference="half-done")),
        p.record(command(CreditFunds, w, amount=2, reference="")),
    )
    assert [r["outcome"] for r in results(batch)] == ["ACCEPTED", "REJECTED", "ACCEPTED"]
    assert [r["version"] for r in results(batch)] == [2, 2, 3]
    assert d.snapshots.loads(p.memory.states[w.encode()])[0].balance == 7
    # and on its own, against the cached aggregate of an earlier batch
    p.run(p.record(command(DebitFunds, w, amount=1, reference="half-done")))
    later, _ = p.run(p.record(command(CreditFunds, w, amount=1, reference="")))
    assert results(later)[0]["version"] == 4
    assert d.snapshots.loads(p.memory.states[w.encode()])[0].balance == 8


def test_the_dedup_window_keeps_only_the_newest_ids_up_to_its_size_and_age():
    memory = PartitionMemory(window_s=60, max_outcomes=3)
    for i in range(5):
        memory.remember(f"k{i}".encode(), 1000.0 + i, i)
    memory.forget_expired(1010.0)
    assert list(memory.outcomes) == [b"k2", b"k3", b"k4"]
    memory.forget_expired(1063.5)
    assert list(memory.outcomes) == [b"k4"]
    memory.remember(b"k4", 2000.0, 99)
    assert memory.outcomes[b"k4"] == (1004.0, 4)  # the first outcome stays the answer


def test_a_command_whose_event_would_not_fit_a_record_is_parked_and_the_batch_goes_on(monkeypatch):
    import infra.batch

    p = Partition(decider())
    w1, w2 = str(uuid.uuid4()), str(uuid.uuid4())
    opened = p.record(command(OpenWallet, w1, currency="EUR"))
    monkeypatch.setattr(infra.batch, "MAX_RECORD_BYTES", 100)  # every wallet event is larger
    batch, states = p.run(p.record(command(OpenWallet, w2, currency="EUR")))
    monkeypatch.undo()
    again, _ = p.run(opened)

    [letter] = [o for o in batch.outgoing if o.topic == "wallet.commands.dlq"]
    assert "exceeds the 100-byte limit" in CODEC.decode(letter.value).record["reason"]
    assert batch.counts == {"dead_lettered": 1} and states == [] and w2.encode() not in p.memory.states
    assert [r["outcome"] for r in results(again)] == ["ACCEPTED"]
