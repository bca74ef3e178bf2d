"""End to end: a signed Facebook webhook goes into the real ingress, the Message
Hub's router decides, the spokes act, and the Facebook stand-in's Send API gets
the bot's reply. The clock runs from "POST answered 200" to "the Send API
stand-in recorded the reply to that message" (matched by PSID and text), so the
figure stays valid whatever runs in between. The baseline is a raw aiokafka
produce → consume round trip of the same webhook bodies on the same broker.

What the path needs is declared once here: PROCESSES (platform processes),
STANDINS (outside systems) and `provision` (the tenant's set-up)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import aiohttp
import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition

from base.settings import Settings
from bench import procs
from bench.commands import read_back, wait_for_leaders
from bench.ingress import APP_SECRET, PAGE, RATE_UNLIMITED, raw_producer, webhook_posts
from bench.load import Post, Posted, http_session, latency_figures, open_loop, post, post_each_once
from hubs.app.commands import RegisterApp, SubscribeApp, subscription_id
from hubs.billing.commands import BILLING_PROVIDER, ApplyEntitlement, entitlement_id
from hubs.tenant.commands import ConnectChannel, CreateTenant, channel_account_id
from hubs.wallet.commands import CreditFunds, OpenWallet
from infra.command_client import CommandClient, new_meta
from infra.security import Keyring
from infra.topics import TopicSpec, ensure_topics, partitions_of
from poseidon import bootstrap

PROCESSES: tuple[tuple[str, ...], ...] = (
    ("processor", "tenant"),
    ("processor", "app"),
    ("processor", "billing"),
    ("processor", "message"),
    ("processor", "wallet"),
    ("processor", "saga"),
    ("projector", "tenant"),
    ("projector", "app"),
    ("projector", "billing"),
    ("projector", "wallet"),
    ("projector", "saga"),
    ("router",),
    ("saga-driver",),
    ("ingress",),
    ("spoke", "botpress"),
    ("spoke", "facebook"),
    ("spoke", "odoo"),
)
"""Every platform process on the path, each started as `python -m poseidon.cli <args>`
with its own free ops port. A routed message runs the inbound-message saga:
reserve on the tenant's wallet → ask the bot → deliver through Facebook → record
the customer in Odoo → (store attachments) → capture. So: the processors of the
hubs that provisioning, routing and the saga write to; the projectors of the
read stores they keep (the saga driver scans the saga store for deadlines);
router, saga driver, ingress; the spokes of the saga's steps. Left out because no
step of a text message needs them: the gRPC query servers (the router reads its
facts from the hubs' events), the MinIO spoke (its step runs only for
attachments), the Message projector and the other hubs."""

STANDINS: dict[str, str] = {
    "facebook": "POSEIDON_FACEBOOK_GRAPH_URL",
    "botpress": "POSEIDON_BOTPRESS_URL",
    "odoo": "POSEIDON_ODOO_URL",
}
"""Outside systems on the path (`python -m tests.standins.<name>` children) and the
setting that points the platform at each. MinIO would be the stack's real S3 server."""

TENANT = "bench-tenant"
WALLET = str(uuid.uuid5(uuid.NAMESPACE_URL, "bench/tenant-wallet"))
FUNDS = 10**12
"""Minor units on the tenant's wallet: every message reserves and captures its charge."""
CONTACTS = 10
"""Distinct senders. Each one's first message creates its Botpress user and
conversation (the warm-up); the measured messages come from known contacts."""
CONNECTIONS = 16
RAW_TOPIC = "bench.raw-roundtrip"
POLL_S = 0.5
REPLY_TIMEOUT_S = 120.0
MAX_BURST = 5_000
RAW_LATENCY_RATE_CAP = 1_000.0
"""Highest rate of the raw round trip's latency run: half the raw maximum is tens of
thousands per second, where this one-process Python client (a task per record,
producer and consumer on one event loop) would set the latency, not the broker."""
MIN_MESSAGES = 20
WARM_UP_ROUNDS = 2
WARM_UP_TIMEOUT_S = 45.0
"""Past the saga's own step deadlines (30 s at most), so a round ends once its sagas have."""


def standin_argv(name: str, port: int, settings: Settings) -> list[str]:
    """How each stand-in is started: on `port`, knowing what the platform will send it."""
    argv = [procs.PYTHON, "-m", f"tests.standins.{name}", "--port", str(port)]
    if name == "facebook":
        # Same app secret as the platform (the spoke sends appsecret_proof); the page's token is known.
        argv += ["--app-secret", APP_SECRET, "--page", f"{PAGE}={settings.facebook_page_token}"]
    elif name == "botpress":
        argv += ["--reply-delay", "0"]  # the bot answers at once: what is measured is ours
    return argv


def path_env() -> dict[str, str]:
    """Settings shared by every process of the path, on top of the run's: free gRPC
    ports for every hub (no clash with a running `make run`), the ingress port, the
    webhook secret and an unlimited per-account rate (one page sends everything)."""
    env = {f"POSEIDON_GRPC_PORT_{hub.upper()}": str(procs.free_port()) for hub in bootstrap.hubs()}
    env["POSEIDON_INGRESS_PORT"] = str(procs.free_port())
    env["POSEIDON_FACEBOOK_APP_SECRET"] = APP_SECRET
    env["POSEIDON_INGRESS_RATE_PER_S"] = RATE_UNLIMITED
    return env


@dataclass
class Path:
    """The running path: where to POST webhooks, where the Send API stand-in is,
    and every child process (for CPU and memory figures)."""

    settings: Settings
    webhook_url: str
    facebook_url: str
    processes: list[procs.Service]
    standins: list[procs.Service]
    env: dict[str, str]
    """What every process of the path was started with, on top of the run's environment."""


async def start(start_service: Callable[..., procs.Service], run_env: dict[str, str], ready_timeout: float = 150) -> Path:
    """Stand-ins first, then topics and the signing keyring, then every process of
    PROCESSES at once; returns when each answers its health check.
    `start_service(name, argv, **env)` starts a child with the run's environment plus `env`."""
    # A namespace of its own inside the run's (so cleanup still finds it): earlier stages
    # left records on ingress.inbound and wallet.commands that this path must not pick up.
    env = {
        **path_env(),
        "POSEIDON_TOPIC_PREFIX": f"{run_env['POSEIDON_TOPIC_PREFIX']}e2e.",
        "POSEIDON_SCHEMA_PREFIX": f"{run_env['POSEIDON_SCHEMA_PREFIX']}e2e_",
        "POSEIDON_STATE_DIR": f"{run_env['POSEIDON_STATE_DIR']}-e2e",
    }
    standins = []
    for name, setting in STANDINS.items():
        port = procs.free_port()
        standin = start_service(f"standin-{name}", standin_argv(name, port, Settings.from_env(run_env)))
        env[setting] = standin.health_url = f"http://127.0.0.1:{port}"  # ready once it accepts connections
        standins.append(standin)
    settings = bootstrap.settings({**run_env, **env})
    specs = [*bootstrap.all_topics(), TopicSpec(RAW_TOPIC, {"cleanup.policy": "delete"})]
    await ensure_topics(settings, specs)
    await wait_for_leaders(settings, [settings.topic(s.name) for s in specs])
    Keyring.of(settings).signing_key()  # one key before anyone signs or verifies (no race to create it)

    processes = []
    for args in PROCESSES:
        ops_port = procs.free_port()
        svc = start_service("-".join(args), procs.poseidon(*args), **env, POSEIDON_OPS_PORT=str(ops_port))
        svc.health_url = f"http://127.0.0.1:{ops_port}/healthz"
        processes.append(svc)
    await asyncio.gather(
        *(procs.wait_until(lambda s=s: procs.http_ok(s.health_url), ready_timeout, s.name, s) for s in processes),
        *(procs.wait_until(lambda s=s: procs.listening(s.health_url), 60, s.name, s) for s in standins),
    )
    webhook_url = f"http://127.0.0.1:{settings.ingress_port}/webhooks/facebook"
    return Path(settings, webhook_url, env[STANDINS["facebook"]], processes, standins, env)


async def provision(settings: Settings, client: CommandClient, page: str = PAGE, tenant: str = TENANT) -> None:
    """Everything the path needs before a message from `page` is answered: the
    tenant, its Facebook page connected, a bot app it subscribes to, a billing
    entitlement for messaging with a quota no run exhausts, and an open wallet
    funded for every message's charge. Returns once the read stores show all of it
    (the router reads the same facts from the hubs' events, current when it decides)."""
    now = datetime.now(UTC)
    app_id = str(uuid.uuid4())

    def meta(aggregate_id: str, owner: str = tenant):
        return new_meta(aggregate_id, owner, actor="bench")

    commands = [
        CreateTenant(meta(tenant), name="Bench", owner_id="bench-owner"),
        ConnectChannel(meta(channel_account_id("facebook", page)), channel="facebook", account_id=page),
        RegisterApp(meta(app_id, "platform"), name="Bench bot", kind="bot", channels=["messenger"], visibility="public"),
        SubscribeApp(meta(subscription_id(tenant, app_id)), app_id=app_id),
        ApplyEntitlement(
            new_meta(entitlement_id(tenant), tenant, actor=BILLING_PROVIDER), plan="pro", message_quota=10**9,
            period_start=now - timedelta(days=1), period_end=now + timedelta(days=30), features=("messaging",),
        ),
        OpenWallet(meta(WALLET), currency="EUR"),
    ]  # fmt: skip
    futures = [await client.submit(c) for c in commands]
    results = await asyncio.wait_for(asyncio.gather(*futures), 120)
    commands.append(CreditFunds(meta(WALLET), amount=FUNDS, reference="bench top-up"))  # once the wallet is open
    results.append(await client.send(commands[-1], timeout=60))
    refused = [(type(c).__name__, r.rejection, r.reason) for c, r in zip(commands, results, strict=True) if not r.accepted]
    if refused:
        raise RuntimeError(f"provisioning refused: {refused}")
    tenant_, app_, billing_, wallet_ = (settings.pg_schema(h) for h in ("tenant", "app", "billing", "wallet"))
    counts = f"""SELECT (SELECT count(*) FROM "{tenant_}".channel_accounts WHERE connected AND tenant_id = $1),
                        (SELECT count(*) FROM "{app_}".subscriptions WHERE active AND tenant_id = $1),
                        (SELECT count(*) FROM "{billing_}".entitlements WHERE tenant_id = $1),
                        (SELECT count(*) FROM "{wallet_}".wallets WHERE balance > 0 AND tenant_id = $1)"""

    async def projected() -> bool:
        conn = await asyncpg.connect(settings.pg_dsn)
        try:
            return tuple(await conn.fetchrow(counts, tenant)) == (1, 1, 1, 1)
        finally:
            await conn.close()

    await procs.wait_until(projected, 90, "provisioning in the read stores")


# -- replies at the Send API stand-in ------------------------------------------------------


def reply_key(psid: str, text: str) -> tuple[str, str]:
    """How a reply is matched to its message: the stand-in bot answers "echo: <text>" to the sender."""
    return psid, f"echo: {text}"


async def replies_seen(session: aiohttp.ClientSession, facebook_url: str) -> dict[tuple[str, str], float]:
    """(psid, text) → when the Send API stand-in accepted it (its own wall-clock stamp, ms)."""
    async with session.get(f"{facebook_url}/_control/sent") as answer:
        sent = await answer.json()
    return {(m["psid"], m["message"].get("text", "")): m["at_ms"] / 1000 for m in sent}


async def wait_for_replies(facebook_url: str, wanted: Sequence[tuple[str, str]], timeout: float) -> dict[tuple[str, str], float]:
    """Polls the stand-in until every wanted reply is there or `timeout` passes; returns those found."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while True:
            seen = await replies_seen(session, facebook_url)
            found = {k: seen[k] for k in wanted if k in seen}
            if len(found) == len(wanted) or time.monotonic() > deadline:
                return found
            await asyncio.sleep(POLL_S)


def message_of(body: Post) -> tuple[str, str]:
    """(psid, text) of the one message event in a webhook body built by webhook_posts."""
    import json

    event = json.loads(body[0])["entry"][0]["messaging"][0]
    return event["sender"]["id"], event["message"]["text"]


async def replied(path: Path, bodies: Sequence[Post], answers: Sequence[Posted], timeout: float) -> dict:
    """Figures of one phase from its POST answers and the replies the stand-in got."""
    accepted = [a for a in answers if a.status == 200]
    keys = {a.index: reply_key(*message_of(bodies[a.index])) for a in accepted}
    found = await wait_for_replies(path.facebook_url, list(keys.values()), timeout)
    latencies = [found[keys[a.index]] - a.answered_at for a in accepted if keys[a.index] in found]
    first_post = min(a.answered_at - a.seconds for a in answers)
    last_reply = max(found.values(), default=first_post)
    return {
        "messages": len(bodies),
        "accepted": len(accepted),
        "replied": len(found),
        "unanswered": len(accepted) - len(found),
        "seconds": round(last_reply - first_post, 3),
        "per_second": round(len(found) / (last_reply - first_post), 2) if found else 0.0,
        **latency_figures(latencies),
    }


# -- the phases ----------------------------------------------------------------------------


async def burst(path: Path, bodies: Sequence[Post], expected_rate: float, timeout: float | None = None) -> dict:
    """Every body POSTed at once (CONNECTIONS at a time); the rate is replies per second
    from the first POST to the last reply: what the path sustains when it has work queued."""
    async with http_session(CONNECTIONS) as session:
        answers = await post_each_once(session, path.webhook_url, bodies, CONNECTIONS)
    return await replied(path, bodies, answers, timeout or REPLY_TIMEOUT_S + len(bodies) / max(expected_rate, 0.1))


async def half_rate(path: Path, bodies: Sequence[Post], rate: float) -> dict:
    """Open loop: body i is POSTed at t0 + i/rate whatever happened to earlier ones."""
    async with http_session(CONNECTIONS) as session:

        async def send(i: int, _due: float) -> Posted:
            return await post(session, path.webhook_url, i, bodies[i])

        answers, late = await open_loop(send, rate, len(bodies))
    figures = await replied(path, bodies, answers, REPLY_TIMEOUT_S)
    return {"target_rate": round(rate, 2), "sent_late": late, **figures}


def burst_size(rate: float, seconds: float, least: int = MIN_MESSAGES) -> int:
    """Messages for a burst that takes about `seconds` at `rate` per second, at least `least`."""
    return max(least, min(MAX_BURST, round(rate * seconds)))


async def measure(path: Path, burst_seconds: float, half_seconds: float, least: int = MIN_MESSAGES) -> dict:
    """Warm-up (one message per contact), a burst sized from the warm-up's rate to
    last about `burst_seconds`, then an open loop at half the burst's rate."""
    for attempt in range(1, WARM_UP_ROUNDS + 1):
        # A step whose hub is still joining its group can miss its saga deadline: that is
        # start-up, not the path's steady state, so the warm-up may take another round.
        warm = await burst(path, webhook_posts(CONTACTS, contacts=CONTACTS, tag=f"warm-up{attempt}"), 1.0, WARM_UP_TIMEOUT_S)
        warm["rounds"] = attempt
        if warm["replied"] == CONTACTS:
            break
    else:
        raise RuntimeError(f"warm-up: {warm['replied']} of {CONTACTS} messages answered in round {attempt}: {warm}")
    bodies = webhook_posts(burst_size(warm["per_second"], burst_seconds, least), contacts=CONTACTS, tag="max")
    children = path.processes + path.standins
    records_before, transactions_before = await records_on_path(path), await transactions(path)
    before = [p.cpu_seconds() for p in children]
    with procs.CpuWindow() as machine:
        started = time.perf_counter()
        maximum = await burst(path, bodies, warm["per_second"])
        wall = time.perf_counter() - started
    # Which process the path waits on: near 100 % is a process out of CPU; all low is waiting.
    spent = {p.name: p.cpu_seconds() - b for p, b in zip(children, before, strict=True) if b is not None}
    cpu = {name: round(100 * seconds / wall, 1) for name, seconds in spent.items()}
    maximum["cpu_percent"] = dict(sorted(cpu.items(), key=lambda kv: -kv[1]))
    maximum["machine_busy_percent"] = machine.figures.get("machine_busy_percent")
    await quiet(path)  # the sagas' last steps (capture) finish after the reply
    answered = max(maximum["replied"], 1)
    platform = sum(seconds for name, seconds in spent.items() if not name.startswith("standin-"))
    maximum["per_message"] = {
        "platform_cpu_ms": round(1000 * platform / answered, 2),
        "kafka_records": round((await records_on_path(path) - records_before) / answered, 1),
        "transactions": round((await transactions(path) - transactions_before) / answered, 1),
    }
    rate = maximum["per_second"] / 2
    if rate <= 0:
        raise RuntimeError(f"no reply during the burst: {maximum}")
    count = max(least, round(rate * half_seconds))
    half = await half_rate(path, webhook_posts(count, contacts=CONTACTS, tag="half"), rate)
    return {"warm_up": warm, "max": maximum, "half": half}


async def naive_relay(path: Path, start_service: Callable[..., procs.Service], burst_seconds: float, least: int) -> dict:
    """The same warm-up and burst against `bench.relay` (one process: verify, ask the
    bot, call the Send API; no Kafka, no state) on the path's stand-ins, once the
    platform's processes are stopped: the rate a naive relay reaches on this machine."""
    port = procs.free_port()
    relay = start_service("relay", [procs.PYTHON, "-m", "bench.relay", "--port", str(port)], **path.env)
    relay.health_url = f"http://127.0.0.1:{port}/healthz"
    try:
        await procs.wait_until(lambda: procs.http_ok(relay.health_url), 60, relay.name, relay)
        naive = dataclasses.replace(path, webhook_url=f"http://127.0.0.1:{port}/webhooks/facebook")
        warm = await burst(naive, webhook_posts(CONTACTS, contacts=CONTACTS, tag="relay-warm-up"), 1.0, WARM_UP_TIMEOUT_S)
        if not warm["replied"]:
            raise RuntimeError(f"the naive relay answered none of its warm-up messages:\n{relay.tail()}")
        bodies = webhook_posts(burst_size(warm["per_second"], burst_seconds, least), contacts=CONTACTS, tag="relay")
        before = relay.cpu_seconds()
        maximum = await burst(naive, bodies, warm["per_second"])
        spent = relay.cpu_seconds() - before if before is not None else None
        if spent is not None and maximum["replied"]:
            maximum["cpu_ms_per_message"] = round(1000 * spent / maximum["replied"], 2)
        return {"warm_up": warm, "max": maximum}
    finally:
        procs.stop_all([relay])


async def records_on_path(path: Path) -> int:
    """Committed records on every topic of the path's namespace (markers not counted)."""
    topics = [path.settings.topic(spec.name) for spec in bootstrap.all_topics()]
    return sum([1 async for _ in read_back(path.settings, topics)])


async def transactions(path: Path) -> int:
    """Exactly-once transactions the hub processors committed so far: each decided
    batch of a partition is one (their `poseidon_processing_seconds` count)."""
    total = 0
    async with aiohttp.ClientSession() as session:
        for svc in path.processes:
            if not svc.name.startswith("processor-"):
                continue
            async with session.get(svc.health_url.replace("/healthz", "/metrics")) as answer:
                text = await answer.text()
            total += sum(
                int(float(line.rsplit(" ", 1)[1]))
                for line in text.splitlines()
                if line.startswith("poseidon_processing_seconds_count")
            )
    return total


async def quiet(path: Path, still_s: float = 1.5, timeout: float = 30.0) -> None:
    """Returns once no new record appeared on the path for `still_s` (or after `timeout`)."""
    deadline, last = time.monotonic() + timeout, -1
    while time.monotonic() < deadline:
        now = await records_on_path(path)
        if now == last:
            return
        last = now
        await asyncio.sleep(still_s)


# -- raw baseline --------------------------------------------------------------------------


class RoundTrip:
    """One producer (ingress's settings) and one consumer on RAW_TOPIC in this process;
    each record carries its sequence number, and its arrival resolves that number's future."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.topic = settings.topic(RAW_TOPIC)
        self.producer = raw_producer(settings)
        self.consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None, enable_auto_commit=False)
        self.arrived: dict[int, float] = {}
        self.waiting: dict[int, asyncio.Future[float]] = {}
        self.all_in = asyncio.Event()
        self.expect = 0
        self._reader: asyncio.Task | None = None

    async def __aenter__(self) -> RoundTrip:
        await self.producer.start()
        await self.consumer.start()
        partitions = [TopicPartition(self.topic, p) for p in (await partitions_of(self.settings, [self.topic]))[self.topic]]
        self.consumer.assign(partitions)
        await self.consumer.seek_to_end(*partitions)
        for tp in partitions:
            await self.consumer.position(tp)  # pinned before anything is produced
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        await self.consumer.stop()
        await self.producer.stop()

    async def _read(self) -> None:
        while True:
            for batch in (await self.consumer.getmany(timeout_ms=100, max_records=10_000)).values():
                now = time.perf_counter()
                for record in batch:
                    seq = int(dict(record.headers)["seq"])
                    self.arrived[seq] = now
                    waiter = self.waiting.pop(seq, None)
                    if waiter is not None and not waiter.done():
                        waiter.set_result(now)
                if len(self.arrived) >= self.expect:
                    self.all_in.set()

    async def send(self, seq: int, key: bytes, value: bytes) -> None:
        await self.producer.send(self.topic, value, key=key, headers=[("seq", str(seq).encode())])


async def raw_round_trip(settings: Settings, bodies: Sequence[Post], count: int, seconds: float) -> dict:
    """Max: `count` bodies (cycled) produced at once, rate from the first send to the
    last arrival. Latency: open loop at half that rate (at most RAW_LATENCY_RATE_CAP)
    for `seconds`, from when each was due to when the consumer had it."""
    payloads = [(message_of(b)[0].encode(), b[0]) for b in bodies]
    async with RoundTrip(settings) as trip:
        trip.expect = count
        started = time.perf_counter()
        for seq in range(count):
            key, value = payloads[seq % len(payloads)]
            await trip.send(seq, key, value)
        await asyncio.wait_for(trip.all_in.wait(), 120)
        elapsed = max(trip.arrived.values()) - started
        rate = count / elapsed

        async def one(i: int, due: float) -> float:
            seq = count + i
            trip.waiting[seq] = asyncio.get_running_loop().create_future()
            key, value = payloads[i % len(payloads)]
            await trip.send(seq, key, value)
            return await asyncio.wait_for(trip.waiting[seq], 30) - due

        half = min(rate / 2, RAW_LATENCY_RATE_CAP)
        trip.expect = count + max(1, round(half * seconds))
        latencies, late = await open_loop(one, half, trip.expect - count)
    return {
        "max": {"records": count, "seconds": round(elapsed, 3), "per_second": round(rate, 1)},
        "half": {"target_rate": round(half, 1), "capped": half < rate / 2, "sent_late": late, **latency_figures(latencies)},
        "record_bytes": round(sum(len(v) for _, v in payloads) / len(payloads), 1),
    }
