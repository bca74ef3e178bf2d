"""Runs every benchmark once, on a namespaced copy of the platform (its own topic
prefix and schema prefix), prints the verdict table, writes bench/results/ and
removes everything it created: its processes, topics, consumer group, schemas.

    .venv/bin/python -m bench.run [--quick | --smoke] [--strict] [--profile] [--only commands,gateway,ingress,e2e]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import signal
import sys
import time
import traceback
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import asyncpg
from aiokafka import errors
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.client import AIOKafkaClient
from aiokafka.protocol.admin import DeleteGroupsRequest

from base.logging import configure
from base.settings import Settings
from bench import commands, e2e, footprint, gateway, ingress, procs, provenance, query, replay, report
from bench import tracing as bench_tracing
from bench.profile import PROFILES, py_spy, summarise
from infra import tls
from infra.command_client import CommandClient
from infra.topics import ensure_topics
from poseidon import bootstrap


@dataclass(frozen=True)
class Sizes:
    wallets: int
    commands: int
    grpc_rate: float
    grpc_seconds: float
    grpc_warmup: float
    ingress_connections: int
    ingress_seconds: float
    ingress_warmup: float
    ingress_bodies: int
    """Distinct signed webhook bodies, cycled by the load client."""
    raw_ingress_records: int
    kafka_perf_records: int
    e2e_burst_seconds: float
    """About how long the end-to-end burst lasts (its size comes from the warm-up's rate)."""
    e2e_half_seconds: float
    raw_trip_records: int
    raw_trip_seconds: float
    gateway_read_rate: float
    gateway_write_rate: float
    gateway_seconds: float
    gateway_warmup: float
    gateway_write_warmup: float
    """The write path settles over its first seconds (latency falls from about 250 ms to
    about 30 ms in the first 5 s after its processor starts): a longer warm-up than reads."""
    e2e_min_messages: int = e2e.MIN_MESSAGES
    """Fewest messages in the end-to-end burst and in the open loop."""


QUICK = Sizes(
    wallets=100, commands=8_000, grpc_rate=1_000, grpc_seconds=3, grpc_warmup=1,
    ingress_connections=32, ingress_seconds=3, ingress_warmup=1, ingress_bodies=2_000, raw_ingress_records=10_000,
    kafka_perf_records=50_000, e2e_burst_seconds=8, e2e_half_seconds=8, raw_trip_records=8_000, raw_trip_seconds=2,
    gateway_read_rate=200, gateway_write_rate=50, gateway_seconds=3, gateway_warmup=1,
    gateway_write_warmup=4,
)  # fmt: skip
FULL = Sizes(
    wallets=200, commands=60_000, grpc_rate=1_000, grpc_seconds=5, grpc_warmup=1,
    ingress_connections=32, ingress_seconds=5, ingress_warmup=1, ingress_bodies=4_000, raw_ingress_records=30_000,
    kafka_perf_records=200_000, e2e_burst_seconds=20, e2e_half_seconds=20, raw_trip_records=20_000, raw_trip_seconds=3,
    gateway_read_rate=200, gateway_write_rate=50, gateway_seconds=5, gateway_warmup=1,
    gateway_write_warmup=6,
)  # fmt: skip
SMOKE = Sizes(
    wallets=10, commands=200, grpc_rate=200, grpc_seconds=1, grpc_warmup=0.5,
    ingress_connections=4, ingress_seconds=1, ingress_warmup=0.5, ingress_bodies=200, raw_ingress_records=1_000,
    kafka_perf_records=2_000, e2e_burst_seconds=1, e2e_half_seconds=1, raw_trip_records=500, raw_trip_seconds=0.5,
    gateway_read_rate=50, gateway_write_rate=10, gateway_seconds=1, gateway_warmup=0.5,
    gateway_write_warmup=0.5, e2e_min_messages=5,
)  # fmt: skip
"""Every stage once, as small as still exercises it: for CI, so a broken benchmark fails
the build. Its figures are neither judged nor recorded."""
STAGES = ("commands", "gateway", "ingress", "e2e", "footprint")
"""`commands` also runs replay and gRPC (they use its events and wallets); `gateway` reads
the wallets `commands` made, or opens its own when run without it."""


class Run:
    """One benchmark run: its namespace, its child processes, its results."""

    def __init__(self, sizes: Sizes, mode: str, profile: bool = False, stages: tuple[str, ...] = STAGES):
        self.sizes, self.mode, self.profile, self.stages = sizes, mode, profile, stages
        epoch = int(time.time())
        self.topic_prefix, self.schema_prefix = f"bench{epoch}.", f"bench{epoch}_"
        self.dir = report.RESULTS / "tmp" / f"bench{epoch}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.env = procs.platform_env(
            {
                "POSEIDON_TOPIC_PREFIX": self.topic_prefix,
                "POSEIDON_SCHEMA_PREFIX": self.schema_prefix,
                "POSEIDON_LOG_LEVEL": "WARNING",
                "POSEIDON_LOG_FORMAT": "json",
                "POSEIDON_STATE_DIR": str(self.dir / "state"),
                "POSEIDON_DEV_MODE": "1",  # stand-ins and built-in webhook secrets
            }
        )
        self.settings = bootstrap.settings(self.env)
        tls.init_dev_ca(tls.files(self.settings).ca.parent)  # the run's own development CA (gRPC is TLS)

        self.results: dict = {
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "mode": mode,
            "sizes": asdict(sizes),
            "stages": list(stages),
            "namespace": {"topic_prefix": self.topic_prefix, "schema_prefix": self.schema_prefix},
            "memory": {},
            "findings": [],
            "errors": [],
        }
        self.codec = bootstrap.codec(self.settings)
        self.services: list[procs.Service] = []
        self.wallets: list[commands.Wallet] = []
        """The wallets in the wallet read store, once a stage has made them."""

    def platform_token(self) -> str:
        """A platform-scope token from the run's keyring, as a service caller would hold."""
        from infra.security import PLATFORM_SCOPE, Keyring, TokenIssuer

        return TokenIssuer(Keyring.of(self.settings), self.settings).access_token(
            "bench", "service", [PLATFORM_SCOPE], ttl_s=3600
        )

    def service(self, name: str, argv: list[str], **env: str) -> procs.Service:
        svc = procs.Service(name, argv, {**self.env, **env}, self.dir, profile=self.profile)
        self.services.append(svc)
        return svc.start()

    # -- 1. command processing --------------------------------------------

    async def bench_commands(self) -> list[commands.Wallet]:
        s = self.sizes
        await commands.create_hub_topics(self.settings)
        wallets = [commands.Wallet(f"tenant-{i % 5}", str(uuid.uuid4())) for i in range(s.wallets)]

        step("command processing: poseidon processor wallet, exactly-once")
        client = await commands.start_client(self.settings, self.codec)
        processor = self.service("processor", procs.poseidon("processor", "wallet"), POSEIDON_OPS_PORT=str(procs.free_port()))
        try:
            await commands.open_wallets(client, wallets, first_timeout=120)
            processor.check_alive()
            with procs.CpuWindow(processor.pid) as cpu:
                ours = await commands.pipelined_credits(client, wallets, s.commands)
            processor.sample_peak()
        finally:
            await client.stop()
            processor.stop()
        # process_cpu_percent near 100 means the processor is CPU-bound; well below, it waits (commits, broker).
        ours["cpu"] = cpu.figures
        ours["processor_log_warnings"] = processor.warnings()
        self.results["commands"] = {"processor": ours}
        self.results["memory"]["processor"] = processor.peak_mb
        show({**ours, "peak_rss_mb": processor.peak_mb})
        if ours["accepted"] != s.commands:
            raise RuntimeError(f"only {ours['accepted']} of {s.commands} credits were accepted")

        step("command processing: what signing events costs (HMAC per event, sign and verify)")
        busy = ours["cpu"].get("process_cpu_percent")
        cpu_us = busy / 100 * ours["seconds"] / ours["accepted"] * 1e6 if busy and ours["accepted"] else None
        self.results["commands"]["event_signing"] = signing = await provenance.measure(self.settings, cpu_us)
        show(signing)

        step("command processing: what tracing costs the deciding (CPU per command, off and on with every span exported)")
        # Off is the default; on, every command is a span (bench/tracing.py; no broker: the deciding alone).
        self.results["commands"]["tracing"] = traced = bench_tracing.measure(max(min(s.commands, 20_000), 2_000))
        show(traced)

        step("command processing: raw consume -> produce the processor's fan-out -> commit loop (baseline)")
        consumed, outputs = await commands.processor_fan_out(self.settings)
        with procs.CpuWindow() as cpu:
            raw = await commands.raw_loop(self.settings, outputs, consumed, consumed - s.commands, self.topic_prefix)
        raw["cpu"] = cpu.figures
        self.results["commands"]["raw_loop"] = raw
        show(raw)
        return wallets

    # -- 2. projection replay ---------------------------------------------

    async def bench_replay(self) -> None:
        s = self.sizes
        expected = 2 * s.wallets + s.commands  # WalletOpened + first credit per wallet, then the credits
        step(f"projection replay: Projector over {expected:,} events (child process)")
        out = self.dir / "replay.json"
        child = self.service("projector", [procs.PYTHON, "-m", "bench.replay", "--expected", str(expected), "--out", str(out)])
        deadline = time.monotonic() + replay.CHILD_TIMEOUT + 60
        while child.alive():
            if time.monotonic() > deadline:
                child.stop()
                raise TimeoutError(f"replay child still running after {replay.CHILD_TIMEOUT + 60:.0f}s:\n{child.tail()}")
            await asyncio.sleep(0.1)
        if child.proc.returncode != 0 or not out.exists():
            raise RuntimeError(f"replay child failed (code {child.proc.returncode}):\n{child.tail()}")
        ours = json.loads(out.read_text())
        self.results["replay"] = {"projector": ours}
        self.results["memory"]["projector"] = ours["peak_rss_mb"]
        show(ours)
        if not ours["until_returned"]:
            self.results["findings"].append(
                f"Projector.run(until=end offsets) had not returned {replay.UNTIL_GRACE:g}s after applying every event "
                "(the bench stopped it; see bench/README.md)"
            )

        step("projection replay: PostgreSQL COPY of the same ledger rows (baseline)")
        copy = await replay.copy_same_rows(self.settings)
        self.results["replay"]["copy"] = copy
        show(copy)
        check = await replay.check_read_store(self.settings, expected)
        self.results["replay"]["read_store"] = check
        if not check["complete"]:
            self.results["errors"].append(f"read store incomplete after replay: {check}")

    # -- 3. gRPC query ----------------------------------------------------

    async def bench_query(self, wallets: list[commands.Wallet]) -> None:
        s = self.sizes
        step(f"gRPC: poseidon grpc wallet over TLS, open loop at {s.grpc_rate:,.0f} req/s for {s.grpc_seconds:g}s")
        measured, peak_mb = await self._grpc_run(self.settings, wallets)
        self.results["query"] = measured
        self.results["memory"]["grpc"] = peak_mb
        show({**measured, "peak_rss_mb": peak_mb})
        step("gRPC: the same server and load with POSEIDON_GRPC_TLS=false (what TLS costs, same run)")
        plaintext, _ = await self._grpc_run(self.settings.with_(grpc_tls=False), wallets, POSEIDON_GRPC_TLS="false")
        self.results["query_plaintext"] = plaintext
        show(plaintext)

    async def _grpc_run(self, settings: Settings, wallets: list[commands.Wallet], **env: str) -> tuple[dict, float | None]:
        s = self.sizes
        port = procs.free_port()
        grpc_server = self.service(
            "grpc",
            procs.poseidon("grpc", "wallet"),
            POSEIDON_GRPC_PORT_WALLET=str(port),
            POSEIDON_OPS_PORT=str(procs.free_port()),
            **env,
        )
        target = f"127.0.0.1:{port}"
        try:
            await procs.wait_until(lambda: query.serving(settings, target), 60, "gRPC server", grpc_server)
            measured = await query.measure(
                settings,
                target,
                wallets,
                s.grpc_rate,
                s.grpc_seconds,
                s.grpc_warmup,
                grpc_server.pid,
                token=self.platform_token(),
            )
            grpc_server.sample_peak()
        finally:
            grpc_server.stop()
        return measured, grpc_server.peak_mb

    # -- 3c. REST API gateway ---------------------------------------------

    async def bench_gateway(self) -> None:
        s = self.sizes
        wallets = self.wallets or await self.open_wallets_for_gateway()
        await gateway.create_topics(self.settings)
        token = self.platform_token()  # also makes the signing key before any server reads it
        results: dict = {}
        self.results["gateway"] = results

        step("gateway: poseidon gateway over the identity, wallet and config gRPC servers and the config processor")
        grpc_ports = {hub: procs.free_port() for hub in gateway.HUBS}
        # Every process of the stage knows where every hub's server listens.
        ports = {f"POSEIDON_GRPC_PORT_{hub.upper()}": str(port) for hub, port in grpc_ports.items()}
        hubs = {f"{hub}-grpc": procs.poseidon("grpc", hub) for hub in gateway.HUBS}
        hubs["config-processor"] = procs.poseidon("processor", "config")
        behind = {name: self.ops_service(f"gateway-{name}", argv, **ports) for name, argv in hubs.items()}
        http_port = procs.free_port()
        server = self.ops_service(
            "gateway",
            procs.poseidon("gateway"),
            **ports,
            POSEIDON_GATEWAY_PORT=str(http_port),
            POSEIDON_GATEWAY_RATE_PER_S_CLIENT=gateway.RATE_UNLIMITED,
            POSEIDON_GATEWAY_RATE_PER_S_TENANT=gateway.RATE_UNLIMITED,
        )
        started = time.perf_counter()
        base_url = f"http://127.0.0.1:{http_port}"
        load = (s.gateway_seconds, token)
        read_calls = gateway.reads(wallets)

        def write_calls(tag: str, seconds: float) -> list[gateway.Call]:
            return gateway.writes(max(1, round(s.gateway_write_rate * seconds)), tag)

        try:
            await asyncio.gather(
                *(procs.wait_until(lambda p=p: procs.http_ok(p.health_url), 90, p.name, p) for p in [*behind.values(), server])
            )
            results["first_write_seconds"] = await gateway.first_write(base_url, token)
            results["start_seconds"] = round(time.perf_counter() - started, 1)
            show({k: results[k] for k in ("start_seconds", "first_write_seconds")})
            read_pids = {"gateway": server.pid, "wallet-grpc": behind["wallet-grpc"].pid}
            write_pids = {"gateway": server.pid, **{n: behind[n].pid for n in ("config-grpc", "config-processor")}}
            read_rate, write_rate = s.gateway_read_rate, s.gateway_write_rate
            step(f"gateway: GET a wallet at {read_rate:,.0f} req/s, PUT a config value at {write_rate:,.0f} req/s")
            await gateway.at_rate(base_url, read_calls, read_rate, s.gateway_warmup, token, {})
            results["read"] = await gateway.at_rate(base_url, read_calls, read_rate, *load, read_pids)
            warm = s.gateway_write_warmup
            await gateway.at_rate(base_url, write_calls("warm-up", warm), write_rate, warm, token, {})
            measured_writes = write_calls("write", s.gateway_seconds)
            results["write"] = await gateway.at_rate(base_url, measured_writes, write_rate, *load, write_pids)
            for p in (server, *behind.values()):
                p.sample_peak()
            show({"read": results["read"], "write": results["write"]})
            step("gateway: the same calls straight on the hubs' gRPC servers (context: what the REST hop adds)")
            targets = {hub: f"127.0.0.1:{port}" for hub, port in grpc_ports.items()}
            results["grpc_direct"] = await gateway.grpc_direct(self.settings, targets, wallets, token, s)
            show(results["grpc_direct"])
        finally:
            procs.stop_all([server, *behind.values()])
        results["log_warnings"] = {p.name: w for p in (server, *behind.values()) if (w := p.warnings())}
        results["peak_rss_mb"] = {p.name: p.peak_mb for p in (server, *behind.values())}
        self.results["memory"]["gateway"] = server.peak_mb
        for name in ("read", "write"):
            if results[name]["accepted"] != results[name]["requests"]:
                self.results["findings"].append(f"gateway {name}: answered other than 200: {results[name]['statuses']}")

        step("gateway: bare aiohttp handler, same client, paths, bodies and rates (baseline)")
        port = procs.free_port()
        bare = self.service("bare-http-gateway", [procs.PYTHON, "-m", "bench.bare_http", "--port", str(port)])
        bare_url = f"http://127.0.0.1:{port}"
        try:
            await procs.wait_until(lambda: procs.http_ok(f"{bare_url}/healthz"), 60, "bare aiohttp", bare)
            await gateway.at_rate(bare_url, read_calls, read_rate, s.gateway_warmup, token, {})
            results["bare_read"] = await gateway.at_rate(bare_url, read_calls, read_rate, *load, {"bare": bare.pid})
            await gateway.at_rate(bare_url, write_calls("warm-up", s.gateway_warmup), write_rate, s.gateway_warmup, token, {})
            results["bare_write"] = await gateway.at_rate(
                bare_url, write_calls("bare", s.gateway_seconds), write_rate, *load, {"bare": bare.pid}
            )
        finally:
            bare.stop()
        show({"bare_read": results["bare_read"], "bare_write": results["bare_write"], "peak_rss_mb": server.peak_mb})

    def ops_service(self, name: str, argv: list[str], **env: str) -> procs.Service:
        """A platform process with its own ops port; ready once its /healthz answers 200."""
        ops_port = procs.free_port()
        svc = self.service(name, argv, POSEIDON_OPS_PORT=str(ops_port), **env)
        svc.health_url = f"http://127.0.0.1:{ops_port}/healthz"
        return svc

    async def open_wallets_for_gateway(self) -> list[commands.Wallet]:
        """Without the commands stage: its processor opens a few wallets and the wallet
        projector writes them to the read store the gateway's reads ask."""
        step("gateway: opening wallets for the reads (no commands stage in this run)")
        await commands.create_hub_topics(self.settings)
        wallets = [commands.Wallet(f"tenant-{i % 5}", str(uuid.uuid4())) for i in range(self.sizes.wallets)]
        client = await commands.start_client(self.settings, self.codec)
        writers = [
            self.ops_service("gateway-wallet-processor", procs.poseidon("processor", "wallet")),
            self.ops_service("gateway-wallet-projector", procs.poseidon("projector", "wallet")),
        ]
        try:
            await commands.open_wallets(client, wallets, first_timeout=120)
            await procs.wait_until(lambda: gateway.projected(self.settings, wallets), 60, "wallet projector", writers[1])
        finally:
            await client.stop()
            procs.stop_all(writers)
        self.wallets = wallets
        return wallets

    # -- 4. ingress ------------------------------------------------------

    async def bench_ingress(self) -> None:
        s = self.sizes
        await ingress.create_topics(self.settings)
        bodies = ingress.webhook_posts(s.ingress_bodies)
        load = (bodies, s.ingress_connections, s.ingress_seconds, s.ingress_warmup)
        results: dict = {}
        self.results["ingress"] = results

        step(f"ingress: poseidon ingress, signed webhooks over {s.ingress_connections} connections for {s.ingress_seconds:g}s")
        port = procs.free_port()
        server = self.service(
            "ingress",
            procs.poseidon("ingress"),
            POSEIDON_INGRESS_PORT=str(port),
            POSEIDON_FACEBOOK_APP_SECRET=ingress.APP_SECRET,
            POSEIDON_INGRESS_RATE_PER_S=ingress.RATE_UNLIMITED,
        )
        try:
            await procs.wait_until(lambda: procs.http_ok(f"http://127.0.0.1:{port}/healthz"), 60, "ingress", server)
            url = f"http://127.0.0.1:{port}/webhooks/facebook"
            results["ingress"] = await ingress.drive(url, *load, server.pid)
            server.sample_peak()
            half = results["ingress"]["per_second"] / 2
            step(f"ingress: open loop at half that rate ({half:,.0f} req/s) for {s.ingress_seconds:g}s")
            results["ingress_half"] = await ingress.at_rate(url, bodies, half, s.ingress_seconds, s.ingress_connections)
            show(results["ingress_half"])
        finally:
            server.stop()
        results["ingress"]["log_warnings"] = server.warnings()
        self.results["memory"]["ingress"] = server.peak_mb
        show({**results["ingress"], "peak_rss_mb": server.peak_mb})
        if results["ingress"]["accepted"] != results["ingress"]["requests"]:
            self.results["findings"].append(f"ingress answered other than 200: {results['ingress']['statuses']}")

        step("ingress: bare aiohttp handler, same client (baseline)")
        port = procs.free_port()
        bare = self.service("bare-http", [procs.PYTHON, "-m", "bench.bare_http", "--port", str(port)])
        try:
            await procs.wait_until(lambda: procs.http_ok(f"http://127.0.0.1:{port}/healthz"), 60, "bare aiohttp", bare)
            results["bare_http"] = await ingress.drive(f"http://127.0.0.1:{port}/webhooks/facebook", *load, bare.pid)
        finally:
            bare.stop()
        show(results["bare_http"])

        step("ingress: raw aiokafka producer, the records ingress stored, its producer settings (baseline)")
        records = await ingress.stored_records(self.settings, s.ingress_bodies)
        results["raw_producer"] = await ingress.raw_produce(self.settings, records, s.raw_ingress_records)
        show(results["raw_producer"])
        in_flight = await ingress.raw_produce(self.settings, records, s.raw_ingress_records, s.ingress_connections)
        results["raw_producer_in_flight"] = in_flight
        show(in_flight)

        step("ingress: Kafka's ProducerPerformance, same record size, acks=all (broker ceiling)")
        results["kafka_perf"] = await ingress.producer_performance(
            self.settings, s.kafka_perf_records, round(results["raw_producer"]["record_bytes"])
        )
        show(results["kafka_perf"])

    # -- 5. end to end ----------------------------------------------------

    async def bench_e2e(self) -> None:
        s = self.sizes
        step(f"end to end: starting {len(e2e.PROCESSES)} platform processes and {len(e2e.STANDINS)} stand-ins")
        started = time.perf_counter()
        path = await e2e.start(self.service, self.env)
        client = CommandClient(path.settings, self.codec, list(bootstrap.hubs().values()))
        await client.start()
        try:
            await e2e.provision(path.settings, client)
        finally:
            await client.stop()
        results: dict = {"start_seconds": round(time.perf_counter() - started, 1)}
        self.results["e2e"] = results
        show(results)

        step("end to end: warm-up, burst (max rate), open loop at half the max rate")
        try:
            results.update(await e2e.measure(path, s.e2e_burst_seconds, s.e2e_half_seconds, s.e2e_min_messages))
            for p in path.processes:
                p.sample_peak()
            procs.stop_all(path.processes)
            step("end to end: a naive relay on the same stand-ins (one process, no Kafka, no state; baseline)")
            results["relay"] = await e2e.naive_relay(path, self.service, s.e2e_burst_seconds, s.e2e_min_messages)
            show({"relay": results["relay"]["max"]})
        finally:
            procs.stop_all(path.processes + path.standins)
        results["peak_rss_mb"] = {p.name: p.peak_mb for p in path.processes}
        results["log_warnings"] = {p.name: w for p in path.processes if (w := p.warnings())}
        largest = max(path.processes, key=lambda p: p.peak_mb or 0)
        self.results["memory"][f"e2e {largest.name}"] = largest.peak_mb
        if results["warm_up"].get("rounds", 1) > 1:
            self.results["findings"].append(
                f"end to end: the warm-up needed {results['warm_up']['rounds']} rounds (a first message missed its reply, "
                "e.g. a saga step's deadline passed while a processor was still starting)"
            )
        for phase in ("warm_up", "max", "half"):
            show({phase: results[phase]})
            if results[phase]["unanswered"]:
                self.results["findings"].append(
                    f"end to end, {phase}: {results[phase]['unanswered']} accepted messages got no reply "
                    f"within the timeout ({e2e.REPLY_TIMEOUT_S:g} s after the last POST)"
                )

        step("end to end: raw aiokafka produce -> consume round trip of the same bodies (baseline)")
        bodies = ingress.webhook_posts(e2e.CONTACTS * 10, contacts=e2e.CONTACTS)
        results["raw_round_trip"] = await e2e.raw_round_trip(path.settings, bodies, s.raw_trip_records, s.raw_trip_seconds)
        show(results["raw_round_trip"])

    # -- everything -------------------------------------------------------

    async def execute(self) -> None:
        version = await pg_version(self.settings)
        if version is None or not await kafka_up(self.settings):
            raise SystemExit(
                f"Kafka ({self.settings.kafka_bootstrap}) or PostgreSQL (POSEIDON_PG_DSN) is not answering; "
                "start them with `infra/local/stack.sh up`"
            )
        self.results["machine"] = report.machine(version)
        stages = {
            "commands": self.bench_wallet,
            "gateway": self.bench_gateway,
            "ingress": self.bench_ingress,
            "e2e": self.bench_e2e,
            "footprint": self.bench_footprint,
        }
        try:
            for name in self.stages:
                # A stage that fails is reported; the next one still runs.
                try:
                    await stages[name]()
                except Exception as exc:
                    self.results["errors"].append(f"{name}: {type(exc).__name__}: {exc}")
                    traceback.print_exc()
        finally:
            await self.clean_up()

    async def bench_footprint(self) -> None:
        step("footprint: the platform idle, every role in one process, then one process per role")
        await ensure_topics(self.settings, bootstrap.all_topics())
        self.results["footprint"] = figures = await footprint.measure(self.env, self.dir, smoke=self.mode == "smoke")
        show(figures)

    async def bench_wallet(self) -> None:
        wallets = await self.bench_commands()
        await self.bench_replay()
        self.wallets = wallets
        await self.bench_query(wallets)

    async def clean_up(self) -> None:
        step("cleaning up")
        procs.stop_all(self.services)
        problems = []
        try:
            admin = AIOKafkaAdminClient(bootstrap_servers=self.settings.kafka_bootstrap, request_timeout_ms=15000)
            await admin.start()
            try:
                doomed = [t for t in await admin.list_topics() if t.startswith(self.topic_prefix)]
                if doomed:
                    await admin.delete_topics(doomed)
            finally:
                await admin.close()
        except Exception as exc:
            problems.append(f"topics: {exc}")
        try:
            conn = await asyncpg.connect(self.settings.pg_dsn)
            try:
                for (name,) in await conn.fetch(
                    "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, $1)", self.schema_prefix
                ):
                    await conn.execute(f'DROP SCHEMA "{name}" CASCADE')
            finally:
                await conn.close()
        except Exception as exc:
            problems.append(f"schemas: {exc}")
        try:
            problems += await delete_consumer_groups(self.settings, self.topic_prefix)
        except Exception as exc:
            problems.append(f"consumer groups: {exc}")
        if problems:
            # Left-overs pile up run after run on a shared broker: an error, not a note.
            print(f"  cleanup incomplete: {problems}", flush=True)
            self.results["errors"].append(f"cleanup: {problems}")
        if not self.results["errors"]:
            shutil.rmtree(self.dir, ignore_errors=True)
        else:
            print(f"  logs kept in {self.dir}", flush=True)


GROUP_GONE = {0, errors.GroupIdNotFound.errno}
GROUP_BUSY = {
    # A child killed before it left stays a member until its session times out (10 s
    # for the platform's consumers); a coordinator may be loading or have moved.
    errors.NonEmptyGroup.errno,
    errors.GroupLoadInProgressError.errno,
    errors.GroupCoordinatorNotAvailableError.errno,
    errors.NotCoordinatorForGroupError.errno,
}


async def delete_consumer_groups(settings: Settings, prefix: str, timeout: float = 60) -> list[str]:
    """Deletes every consumer group whose id starts with `prefix`, trying again while
    some are still non-empty, and lists the groups again to confirm; returns what is left.
    aiokafka's admin client lists groups but has no call to delete them, so its protocol's
    DeleteGroupsRequest goes to each group's coordinator over a plain AIOKafkaClient."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=15000)
    client = AIOKafkaClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=15000)
    await admin.start()
    await client.bootstrap()
    try:
        deadline = time.monotonic() + timeout
        while True:
            groups = sorted({g[0] for g in await admin.list_consumer_groups() if g[0].startswith(prefix)})
            if not groups:
                return []
            refused: dict[str, int] = {}
            for group in groups:
                coordinator = await admin.find_coordinator(group)
                answer = await client.send(coordinator, DeleteGroupsRequest([group]))
                refused |= {g: code for g, code in answer.results if code not in GROUP_GONE}
            names = {g: errors.for_code(code).__name__ for g, code in refused.items()}
            if set(refused.values()) - GROUP_BUSY:
                return [f"consumer groups not deleted: {names}"]
            if time.monotonic() > deadline:
                return [f"consumer groups left after {timeout:.0f}s: {names or groups}"]
            if refused:
                await asyncio.sleep(1)
    finally:
        await client.close()
        await admin.close()


async def kafka_up(settings: Settings) -> bool:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=5000)
    try:
        await asyncio.wait_for(admin.start(), 10)
        await admin.close()
        return True
    except Exception:
        return False


async def pg_version(settings: Settings) -> str | None:
    try:
        conn = await asyncpg.connect(settings.pg_dsn)
        try:
            return await conn.fetchval("SHOW server_version")
        finally:
            await conn.close()
    except (OSError, asyncpg.PostgresError):
        return None


def step(text: str) -> None:
    print(f"\n== {text}", flush=True)


def show(figures: dict) -> None:
    print("  " + json.dumps(figures, default=str), flush=True)


async def main_async(sizes: Sizes, mode: str, profile: bool, stages: tuple[str, ...] = STAGES) -> dict:
    run = Run(sizes, mode, profile, stages)
    task = asyncio.current_task()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    print(f"bench run {run.topic_prefix}* / {run.schema_prefix}* ({mode}): {json.dumps(asdict(sizes))}", flush=True)
    await run.execute()
    if profile:
        for svc in run.services:
            print("\n" + summarise(svc.name, top=20), flush=True)
    return run.results


def main() -> None:
    parser = argparse.ArgumentParser(description="Poseidon Hub benchmarks against raw Kafka and PostgreSQL.")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="smaller sizes (under two minutes)")
    size.add_argument(
        "--smoke",
        action="store_true",
        help="every stage with tiny sizes, for CI: exit 1 if any fails (figures not judged or recorded)",
    )
    parser.add_argument("--strict", action="store_true", help="exit 2 when any target is missed")
    parser.add_argument(
        "--profile", action="store_true", help="py-spy each platform process into results/profiles/ (figures not recorded)"
    )
    parser.add_argument(
        "--only", default=",".join(STAGES), help=f"comma-separated stages of {', '.join(STAGES)} (a partial run is not recorded)"
    )
    args = parser.parse_args()
    stages = tuple(s.strip() for s in args.only.split(",") if s.strip())
    if not stages or set(stages) - set(STAGES):
        parser.error(f"--only takes stages of {', '.join(STAGES)}")
    if args.smoke and args.strict:
        parser.error("--smoke figures are not judged: --strict does not apply")
    partial = set(stages) != set(STAGES)
    configure("WARNING", "console")
    mode, sizes = ("smoke", SMOKE) if args.smoke else ("quick", QUICK) if args.quick else ("full", FULL)
    if args.profile and py_spy() is None:
        parser.error("--profile needs py-spy: .venv/bin/pip install py-spy")
    started = time.monotonic()
    results = asyncio.run(main_async(sizes, mode, args.profile, stages))
    rows = report.rows_for(results)
    m = results["machine"]
    print(
        f"\n{m['cores']} cores ({m['cpu']}), {m['memory_gb']} GB, Python {m['python']}, "
        f"Kafka {m['kafka']}, PostgreSQL {m['postgresql']}, commit {m['commit']}\n"
    )
    print(report.table(rows))
    for finding in results["findings"]:
        print(f"FINDING: {finding}")
    for error in results["errors"]:
        print(f"ERROR: {error}")
    if args.smoke:
        # A figure missing without an exception (ERROR row) is a broken benchmark too.
        missing = [r.benchmark for r in rows if r.verdict == "ERROR"]
        print(f"\nsmoke run ({', '.join(stages)}) in {time.monotonic() - started:.0f} s: figures not judged, not recorded")
        if missing and not results["errors"]:
            print(f"ERROR: no figure for {', '.join(missing)}")
            sys.exit(1)
    elif args.profile:
        print(f"\nprofiled run (figures perturbed, not recorded); profiles in {PROFILES}")
    elif partial:
        print(f"\npartial run ({', '.join(stages)}): not recorded")
    else:
        report.write(results, rows)
        print(f"\nwritten: {report.RESULTS / 'latest.md'}, latest.json, history.jsonl")
    if results["errors"]:
        sys.exit(1)
    if args.strict and any(r.verdict in ("MISS", "ERROR") for r in rows):
        sys.exit(2)


if __name__ == "__main__":
    main()
