"""What tracing costs the processor's per-command path: the CPU to decide a batch
of commands (infra.batch.BatchDecider, the aggregate processor's deciding, no
broker) with tracing off, and on with every span exported (in memory, through the
same batching span processor as OTLP) from records that carry a traceparent.

    .venv/bin/python -m bench.tracing [--commands N]
"""

from __future__ import annotations

import argparse
import time
import uuid

from base.logging import configure
from base.settings import Settings
from hubs.wallet.commands import CreditFunds, OpenWallet
from hubs.wallet.hub import HUB
from infra import tracing
from infra.batch import AggregateCache, BatchDecider, Incoming, PartitionMemory
from infra.command_client import new_meta
from infra.dlq import DeadLetters
from infra.hub import command_to_record
from schemas.codec import Catalog, Codec

CODEC = Codec(Catalog.load())
TOPICS = {"events": "wallet.events", "command-results": "wallet.command-results"}
BATCH = 500
WALLETS = 100
TRACEPARENT = ("traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")


def records(n: int) -> list[list[Incoming]]:
    """Batches of command records: each wallet opened, then credited (every record with a traceparent)."""
    wallets = [str(uuid.uuid4()) for _ in range(WALLETS)]
    commands = [OpenWallet(meta=new_meta(w, "bench"), currency="EUR") for w in wallets]
    commands += [CreditFunds(meta=new_meta(wallets[i % WALLETS], "bench"), amount=1) for i in range(n)]
    out = [
        Incoming(
            "wallet.commands",
            0,
            i,
            c.meta.aggregate_id.encode(),
            CODEC.encode(c.avro_name(), command_to_record(c)),
            (TRACEPARENT,),
        )
        for i, c in enumerate(commands)
    ]
    return [out[i : i + BATCH] for i in range(0, len(out), BATCH)]


def commit(decider: BatchDecider, memory: PartitionMemory, batch) -> None:
    """What the processor does after the batch's transaction (its states and results remembered)."""
    states = {r.key: r.value for r in decider.state_records(batch, "changelog")}
    decider.committed(memory, batch, states, {i: i for i in range(len(batch.outgoing))})


def cpu_per_command(n: int) -> float:
    """Process CPU seconds per command to decide `n` credits (after the wallets' opening)."""
    decider = BatchDecider(HUB, CODEC, TOPICS, DeadLetters(None, CODEC, "bench", "wallet.commands.dlq"), AggregateCache(1000))
    memory = PartitionMemory(3600, 100_000)
    batches = records(n)
    first, rest = batches[0], batches[1:]
    commit(decider, memory, decider.decide(memory, [decider.parse(r) for r in first], {}))  # the wallets opened
    started = time.process_time()
    for batch in rest:
        commit(decider, memory, decider.decide(memory, [decider.parse(r) for r in batch], {}))
    return (time.process_time() - started) / sum(len(b) for b in rest)


def measure(n: int) -> dict:
    """CPU µs per command deciding `n` credits, tracing off and on (spans exported in memory)."""
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    off = cpu_per_command(n)
    exporter = InMemorySpanExporter()
    tracing.configure(Settings(), "bench-tracing", exporter=exporter)
    try:
        on = cpu_per_command(n)
    finally:
        tracing.disable()
    return {
        "commands": n,
        "cpu_us_per_command_off": round(off * 1e6, 1),
        "cpu_us_per_command_on": round(on * 1e6, 1),
        "spans_exported": len(exporter.get_finished_spans()),
        "cost_percent": round((on / off - 1) * 100, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=20_000)
    args = parser.parse_args()
    configure("WARNING")  # the deciding, not the console: its log lines are not written
    m = measure(args.commands)
    print(f"processor per-command CPU, tracing off: {m['cpu_us_per_command_off']} µs")
    spans = m["spans_exported"]
    print(f"processor per-command CPU, tracing on (every command a span, {spans} exported): {m['cpu_us_per_command_on']} µs")
    print(f"cost of tracing on: {m['cost_percent']:+} %")


if __name__ == "__main__":
    main()
