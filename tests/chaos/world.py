"""What every chaos scenario shares: the platform's processes as killable
subprocesses (one list), the provisioning of a tenant that may use the message
path (one helper), signed webhook traffic that retries as Facebook does, wallet
command traffic with its expected ledger, and the invariant checks (nothing
accepted lost, nothing acted on twice, ledger balanced, read stores equal to a
replay). Loopback only; never touches processes it did not start."""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field

import aiohttp

from hubs.wallet.commands import CaptureFunds, CreditFunds, DebitFunds, OpenWallet, ReleaseFunds, ReserveFunds
from infra.command_client import CommandClient, new_meta
from poseidon import bootstrap
from tests.harness import Platform, eventually, fetch, free_port, provision_tenant
from tests.standins.botpress import running_botpress
from tests.standins.facebook import message_event, running_facebook, signed_webhook, webhook_body
from tests.standins.odoo import running_odoo

APP_SECRET = "chaos-app-secret"
TENANT = "acme"
PAGE = "104857600999"
TENANT_WALLET = str(uuid.uuid5(uuid.NAMESPACE_URL, "chaos/acme-wallet"))
FUNDS, CHARGE = 1_000_000, 3
"""The tenant's wallet is funded with FUNDS; each answered message is charged CHARGE (minor units)."""
LEDGER_TENANT = "ledger-co"
"""Owner of the wallets the ledger scenarios drive directly (never the wallet a message is charged to)."""
HUBS = ("tenant", "app", "billing", "message", "wallet", "saga")
SAGA_STEP_DEADLINE_S = 180
"""Every inbound-message saga step's deadline here. The defaults (10-60 s) are shorter
than a SIGKILLed process's restart and backlog on a loaded 2-core machine, which
turns a kill into compensated sagas (unanswered messages): these tests judge loss
and duplication, not the deadline policy (see the report in bench/results/chaos.md)."""
SAGA_STEPS = ("reserve_charge", "ask_bot", "deliver_reply", "record_customer", "store_attachments", "capture_charge")

# Every process of the message path, in start order: (process name, `poseidon` arguments).
# One list: a new step of the path is one more line here.
PROCESSES: list[tuple[str, tuple[str, ...]]] = [
    *[(f"{hub}-processor", ("processor", hub)) for hub in HUBS],
    *[(f"{hub}-projector", ("projector", hub)) for hub in HUBS],
    *[(f"{hub}-grpc", ("grpc", hub)) for hub in ("tenant", "app", "billing")],
    ("ingress", ("ingress",)),
    ("router", ("router",)),
    ("saga-driver", ("saga-driver",)),
    *[(f"spoke-{name}", ("spoke", name)) for name in ("botpress", "facebook", "odoo", "minio")],
]
SCALED_OUT = [name for name, args in PROCESSES if args[0] != "grpc" and name != "spoke-minio"]
"""The roles of the message path that can run as several instances: every consumer-group
member (hub processors and projectors, router, saga driver, the spokes that answer a
message) and the stateless ingress. The gRPC servers and the MinIO spoke stay single."""


def instances(processes: list[tuple[str, tuple[str, ...]]], n: int) -> list[tuple[str, tuple[str, ...]]]:
    """`processes` with each role of SCALED_OUT run `n` times, named `<role>.1` … `<role>.n`."""
    return [
        (f"{name}.{i}", args) if name in SCALED_OUT else (name, args)
        for name, args in processes
        for i in range(1, (n if name in SCALED_OUT else 1) + 1)
    ]


def role_of(name: str) -> str:
    """`spoke-facebook.2` → `spoke-facebook` (a name without an instance number is its role)."""
    return name.rsplit(".", 1)[0]


WALLET_PROCESSES: list[tuple[str, tuple[str, ...]]] = [
    ("wallet-processor", ("processor", "wallet")),
    ("wallet-projector", ("projector", "wallet")),
]


def say(text: str) -> None:
    """What a chaos test did, as it happens (pytest -s shows it)."""
    print(f"[chaos {time.strftime('%H:%M:%S')}] {text}", flush=True)


async def until_settled(probe, done, timeout: float, idle_s: float):
    """Poll `probe()` every second until `done(snapshot)`, or until the snapshot has
    not changed for `idle_s` (nothing is moving: waiting longer would only hide
    the finding), or `timeout`; returns the last snapshot."""
    deadline = time.monotonic() + timeout
    last, since = None, time.monotonic()
    while True:
        snapshot = await probe()
        if done(snapshot):
            return snapshot
        if snapshot != last:
            last, since = snapshot, time.monotonic()
        if time.monotonic() - since > idle_s or time.monotonic() > deadline:
            say(f"stopped waiting: nothing moved for {time.monotonic() - since:.0f}s (last {snapshot})")
            return snapshot
        await asyncio.sleep(1.0)


# ---------------------------------------------------------------- the message path


@dataclass
class World:
    """The message path running as subprocesses of `platform`, with the outside stand-ins in this process."""

    platform: Platform
    settings: object
    client: CommandClient
    fb: object
    bp: object
    odoo: object
    webhook_urls: list[str]
    """One per ingress instance: a client tries them in turn, as a load balancer would."""
    env: dict[str, str]


@asynccontextmanager
async def message_world(platform: Platform, processes=PROCESSES, **setting_changes):
    """Stand-ins, every process of `processes` started and healthy (each ingress on a port of its own), the tenant provisioned."""
    async with AsyncExitStack() as stack:
        fb = await stack.enter_async_context(running_facebook(app_secret=APP_SECRET))
        bp = await stack.enter_async_context(running_botpress())
        odoo = await stack.enter_async_context(running_odoo())
        ingress_ports = {name: free_port() for name, args in processes if args[0] == "ingress"}
        changes = dict(
            facebook_graph_url=fb.url,
            facebook_app_secret=APP_SECRET,
            botpress_url=bp.url,
            odoo_url=odoo.url,
            ingress_port=next(iter(ingress_ports.values())),
            spoke_max_attempts=3,
            breaker_fail_max=3,
            breaker_reset_s=2.0,
            http_timeout_s=5.0,
            message_charge_minor=CHARGE,
            inbound_saga_deadlines_s=dict.fromkeys(SAGA_STEPS, SAGA_STEP_DEADLINE_S),
        )
        changes.update(setting_changes)
        settings = platform.settings.with_(**changes)
        platform.settings = settings
        env = {f"POSEIDON_{k.upper()}": str(v) for k, v in changes.items() if not isinstance(v, dict)}
        env["POSEIDON_INBOUND_SAGA_DEADLINES"] = ",".join(f"{k}={v}" for k, v in settings.inbound_saga_deadlines_s.items())
        fb.state.add_page(PAGE, settings.facebook_page_token)
        started = time.monotonic()
        for name, args in processes:
            own = {"POSEIDON_INGRESS_PORT": str(ingress_ports[name])} if name in ingress_ports else {}
            platform.launch(name, *args, wait=False, env={**env, **own})
        for name, _ in processes:
            await asyncio.to_thread(platform.wait_healthy, name, 180)
        say(f"{len(processes)} processes healthy in {time.monotonic() - started:.0f}s")
        codec = bootstrap.codec(settings)
        client = await stack.enter_async_context(CommandClient(settings, codec, list(bootstrap.hubs().values())))
        await provision(settings, client, TENANT, PAGE)
        urls = [f"http://127.0.0.1:{port}/webhooks/facebook" for port in ingress_ports.values()]
        yield World(platform, settings, client, fb, bp, odoo, urls, env)


async def provision(settings, client: CommandClient, tenant: str, page: str) -> None:
    """The tenant, its page, a bot app, an entitlement and a wallet funded for the per-message charge."""
    await provision_tenant(settings, client, tenant, page, wallet_id=TENANT_WALLET, funds=FUNDS)


async def charges(world: World, accepted: int, timeout: float = 300.0, idle_s: float = 60.0) -> tuple[dict, dict]:
    """Waits (bounded, or until nothing moves) for one captured charge per accepted
    message and every saga ended; returns the tenant wallet's figures and the
    sagas by (state, error)."""
    settings = world.settings

    async def probe():
        [row] = await fetch(
            settings,
            settings.pg_schema("wallet"),
            "SELECT w.balance, w.reserved, count(*) FILTER (WHERE l.kind = 'capture') AS captures,"
            " count(*) FILTER (WHERE l.kind = 'reserve') AS reserves, count(*) FILTER (WHERE l.kind = 'release') AS releases,"
            " coalesce(sum(l.balance_delta), 0) AS ledger_balance, count(l.*) AS entries, count(DISTINCT l.event_id) AS events"
            " FROM wallets w LEFT JOIN ledger l USING (wallet_id) WHERE w.wallet_id = $1 GROUP BY w.wallet_id",
            uuid.UUID(TENANT_WALLET),
        )
        sagas = await fetch(
            settings, settings.pg_schema("saga"), "SELECT state, error, count(*) AS n FROM sagas GROUP BY state, error"
        )
        return tuple(sorted(dict(row).items())), tuple(sorted((r["state"], r["error"], r["n"]) for r in sagas))

    def done(snapshot) -> bool:
        wallet, sagas = dict(snapshot[0]), snapshot[1]
        ended = all(state in ("completed", "compensated", "aborted", "failed") for state, _, _ in sagas)
        return wallet["captures"] >= accepted and wallet["reserved"] == 0 and ended

    wallet, sagas = await until_settled(probe, done, timeout, idle_s)
    return dict(wallet), {(state, error): n for state, error, n in sagas}


def saga_states(sagas: dict) -> dict[str, int]:
    states: dict[str, int] = {}
    for (state, _), n in sagas.items():
        states[state] = states.get(state, 0) + n
    return states


def charge_findings(wallet: dict, sagas: dict, answered: int) -> list[str]:
    """The tenant's wallet after `answered` messages: charged once each, nothing left
    reserved, ledger balanced; and every saga that did not complete, with its error."""
    problems = [f"{n} saga(s) {state}: {error}" for (state, error), n in sagas.items() if state != "completed"]
    if wallet["balance"] != FUNDS - CHARGE * answered:
        problems.append(f"wallet balance {wallet['balance']} != {FUNDS} - {CHARGE} x {answered} answered messages")
    if wallet["captures"] != answered:
        problems.append(f"{wallet['captures']} charges captured for {answered} answered messages")
    if wallet["ledger_balance"] != wallet["balance"] or wallet["entries"] != wallet["events"]:
        problems.append(f"wallet ledger unbalanced or doubled: {wallet}")
    if wallet["reserved"]:
        problems.append(f"{wallet['reserved']} left reserved on the wallet (a reservation neither captured nor released)")
    return problems


@dataclass
class Webhook:
    """One message a person wrote, as Facebook delivers it: the same signed body until answered 200."""

    psid: str
    text: str
    mid: str
    statuses: list = field(default_factory=list)
    failed_at: list[float] = field(default_factory=list)
    """When each POST that was not answered 200 ended (monotonic)."""
    accepted_at: float | None = None

    @property
    def accepted(self) -> bool:
        return 200 in self.statuses


async def deliver(
    session: aiohttp.ClientSession, urls: list[str], hook: Webhook, first: int = 0, give_up_after_s: float = 240.0
) -> None:
    """POST until answered 200, backing off as Facebook's retries do (bounded). With
    several ingress instances, starts at `urls[first]` and moves to the next one after
    a failure, as a load balancer would: at once when nobody answers the connection."""
    body, headers = signed_webhook(webhook_body(message_event(PAGE, hook.psid, hook.text, mid=hook.mid)), APP_SECRET)
    deadline = time.monotonic() + give_up_after_s
    pause, attempt = 0.5, 0
    while time.monotonic() < deadline:
        url = urls[(first + attempt) % len(urls)]
        attempt += 1
        try:
            async with session.post(url, data=body, headers=headers, timeout=aiohttp.ClientTimeout(total=15)) as reply:
                hook.statuses.append(reply.status)
                if reply.status == 200:
                    hook.accepted_at = time.monotonic()
                    return
        except (aiohttp.ClientError, TimeoutError) as exc:
            hook.statuses.append(type(exc).__name__)
            if isinstance(exc, aiohttp.ClientConnectionError) and attempt % len(urls):
                hook.failed_at.append(time.monotonic())
                continue  # that instance is gone: the next one, without waiting
        hook.failed_at.append(time.monotonic())
        await asyncio.sleep(pause)
        pause = min(pause * 1.5, 5.0)


async def send_traffic(world: World, per_s: float, tag: str, stop: asyncio.Event, max_count: int = 200) -> list[Webhook]:
    """Messages, each from its own person, started `per_s` a second until `stop` is set
    (at most `max_count`); returns once each is answered 200 or given up."""
    hooks: list[Webhook] = []
    async with aiohttp.ClientSession() as session:
        tasks = []
        while not stop.is_set() and len(hooks) < max_count:
            i = len(hooks)
            hook = Webhook(psid=str(24_100_000_000_000_000 + i), text=f"{tag} #{i}", mid=f"m_{tag}_{i}_{uuid.uuid4().hex}")
            hooks.append(hook)
            tasks.append(asyncio.create_task(deliver(session, world.webhook_urls, hook, first=i)))
            await asyncio.sleep(1.0 / per_s)
        await asyncio.gather(*tasks)
    return hooks


async def churn(
    platform: Platform,
    names: list[str],
    rng: random.Random,
    log: list[str],
    *,
    first_s=(2.0, 6.0),
    down_s=(0.5, 3.0),
    watch: Callable[[str], Awaitable] | None = None,
):
    """SIGKILL each of `names` once, in the order given, at a seeded random moment;
    restart it after a seeded random pause (waiting until it is healthy). `watch(name)`,
    called just before each kill, returns what to await after the restart before the
    next kill (a takeover being timed: `Takeovers.watch`)."""
    for name in names:
        await asyncio.sleep(rng.uniform(*first_s))
        watching = watch(name) if watch is not None else None
        await asyncio.to_thread(platform.kill, name)
        log.append(f"SIGKILL {name}")
        say(f"SIGKILL {name}")
        await asyncio.sleep(rng.uniform(*down_s))
        started = time.monotonic()
        await asyncio.to_thread(platform.restart, name, True)
        say(f"restarted {name} (healthy in {time.monotonic() - started:.1f}s)")
        if watching is not None:
            await watching


def assignments(path, start: int = 0, end: int | None = None) -> set[str]:
    """The consumer groups a process logged a rebalance of ("partitions assigned": hub
    processors and projectors name theirs, every infra.consumers member its group)
    between byte `start` and `end` of its JSON log."""
    with open(path, "rb") as log:
        log.seek(start)
        text = log.read(-1 if end is None else max(end - start, 0))
    groups = set()
    for line in text.splitlines():
        if b'"partitions assigned"' not in line:
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # a line cut by the SIGKILL, or still being written
        groups.add(str(entry.get("group") or entry.get("processor") or entry.get("projector")))
    return groups


@dataclass
class Takeovers:
    """Takeover per kill of one of several instances of a role: from the SIGKILL until
    every surviving instance has logged a rebalance in each consumer group it is in
    (from then on each of the victim's partitions has a live owner, a processor's
    state restored). Roles without a group (the ingress) are timed from the traffic
    instead (`ingress`)."""

    platform: Platform
    timeout: float = 90.0
    seconds: dict[str, list[float | None]] = field(default_factory=dict)
    """role → takeover of each kill, in seconds (None: not within `timeout`)."""
    killed: list[tuple[str, float]] = field(default_factory=list)
    """(instance, when it was SIGKILLed), monotonic."""

    def watch(self, victim: str) -> asyncio.Task:
        """Call just before killing `victim`: notes where every log stands; the task times
        the takeover, then waits until the restarted victim has rejoined its groups (so
        that its rejoin is not taken for the next kill's takeover)."""
        role = role_of(victim)
        others = [n for n in self.platform.procs if n != victim and role_of(n) == role]
        marks = {n: self.platform.procs[n].log.stat().st_size for n in [victim, *others]}
        killed = time.monotonic()
        self.killed.append((victim, killed))
        return asyncio.ensure_future(self._time(role, victim, others, marks, killed))

    async def _time(self, role: str, victim: str, others: list[str], marks: dict[str, int], killed: float) -> None:
        log = {n: self.platform.procs[n].log for n in marks}
        groups = {n: assignments(log[n], 0, marks[n]) for n in others}
        if not any(groups.values()):
            return
        took = None
        while time.monotonic() - killed < self.timeout:
            if all(groups[n] <= assignments(log[n], marks[n]) for n in others):
                took = time.monotonic() - killed
                break
            await asyncio.sleep(0.2)
        self.seconds.setdefault(role, []).append(took)
        say(f"{role}: " + (f"partitions taken over {took:.1f}s after the kill" if took else "no takeover logged"))
        want = set().union(*groups.values())
        while time.monotonic() - killed < 2 * self.timeout and not want <= assignments(log[victim], marks[victim]):
            await asyncio.sleep(0.2)

    def ingress(self, hooks: list[Webhook], window_s: float = 15.0) -> None:
        """Per ingress kill: the longest a webhook whose POST failed within `window_s`
        of the kill then waited for its 200 (the client moves to the other instance)."""
        for victim, killed in self.killed:
            if not role_of(victim).startswith("ingress"):
                continue
            waits = [
                h.accepted_at - min(t for t in h.failed_at if killed <= t <= killed + window_s)
                for h in hooks
                if h.accepted_at is not None and any(killed <= t <= killed + window_s for t in h.failed_at)
            ]
            self.seconds.setdefault(role_of(victim), []).append(max(waits, default=0.0))

    def figures(self) -> dict[str, str]:
        """role → each of its kills' takeover in seconds, in kill order ('-': none within `timeout`)."""
        return {
            role: ", ".join("-" if t is None else f"{t:.1f}" for t in times) + " s"
            for role, times in sorted(self.seconds.items())
        }


@dataclass
class PathFindings:
    sent: int
    accepted: int
    answered: int
    duplicates: dict[str, int]
    missing_inbound: list[str]
    unanswered: list[str]
    posts: int

    def problems(self) -> list[str]:
        def some(items: list[str]) -> str:
            return ", ".join(items[:3]) + (f" and {len(items) - 3} more" if len(items) > 3 else "")

        found = []
        if self.accepted < self.sent:
            found.append(f"only {self.accepted} of {self.sent} messages accepted")
        if self.missing_inbound:
            found.append(
                f"{len(self.missing_inbound)} accepted messages not in the Message read store ({some(self.missing_inbound)})"
            )
        if self.unanswered:
            found.append(f"{len(self.unanswered)} accepted messages never answered ({some(self.unanswered)})")
        found += [f"answered {n + 1} times: {text}" for text, n in self.duplicates.items()]
        return found

    def line(self) -> str:
        return (
            f"{self.sent} sent, {self.accepted} accepted ({self.posts} POSTs), {self.answered} answered at the Send API, "
            f"{len(self.missing_inbound)} missing in the read store, {len(self.unanswered)} unanswered, "
            f"{sum(self.duplicates.values())} duplicate replies"
        )


async def check_message_path(world: World, hooks: list[Webhook], timeout: float = 300.0, settle_s: float = 5.0) -> PathFindings:
    """Waits (bounded) until every accepted message is in the Message read store and
    answered at the Send API stand-in, then reports what was lost or doubled."""
    settings, fb = world.settings, world.fb
    accepted = [h for h in hooks if h.accepted]
    expected = {f"echo: {h.text}": h for h in accepted}

    def replies() -> Counter:
        return Counter(m.message.get("text", "") for m in fb.state.all_sent())

    async def inbound_ids() -> set[str]:
        rows = await fetch(
            settings,
            settings.pg_schema("message"),
            "SELECT message_id FROM messages WHERE tenant_id = $1 AND direction = 'inbound'",
            TENANT,
        )
        return {r["message_id"] for r in rows}

    async def probe():
        return len(set(expected) & set(replies())), len({h.mid for h in accepted} & await inbound_ids())

    await until_settled(probe, lambda seen: seen == (len(expected), len(accepted)), timeout, idle_s=90.0)
    await asyncio.sleep(settle_s)  # anything doubled would have been sent by now
    got = replies()
    stored = await inbound_ids()
    return PathFindings(
        sent=len(hooks),
        accepted=len(accepted),
        answered=sum(1 for text in expected if got[text] >= 1),
        duplicates={text: n - 1 for text, n in got.items() if n > 1},
        missing_inbound=[h.mid for h in accepted if h.mid not in stored],
        unanswered=[h.text for h in accepted if got[f"echo: {h.text}"] == 0],
        posts=sum(len(h.statuses) for h in hooks),
    )


async def outbound_settled(world: World, accepted: int, timeout: float = 120.0) -> None:
    """The read store shows one outbound reply per accepted message, each past 'queued'."""
    settings = world.settings

    async def settled() -> bool:
        rows = await fetch(
            settings,
            settings.pg_schema("message"),
            "SELECT status, count(*) AS n FROM messages WHERE tenant_id = $1 AND direction = 'outbound' GROUP BY status",
            TENANT,
        )
        by_status = {r["status"]: r["n"] for r in rows}
        return sum(by_status.values()) >= accepted and by_status.get("queued", 0) == 0

    await eventually(settled, timeout=timeout, interval=1.0)


# ---------------------------------------------------------------- replay


def replay_differences(platform: Platform, read_model: str, tries: int = 3) -> tuple[dict, int]:
    """`poseidon replay <read_model> --dry-run`: the read store rebuilt from the log
    into a shadow schema and compared with the live one. A difference is asked
    again (a projector may still be applying its last batch); returns the last
    report's differences and how many rebuilds it took."""
    for attempt in range(1, tries + 1):
        done = platform.run_cli("replay", read_model, "--dry-run", "--no-progress", "--json", timeout=300)
        if done.returncode not in (0, 1) or not done.stdout.strip():
            raise AssertionError(f"replay {read_model} failed ({done.returncode}): {done.stderr[-2000:]}")
        report = json.loads(done.stdout)
        differences = report["differences"] or {}
        if not any(differences.values()):
            return differences, attempt
        time.sleep(5)
    return differences, attempt


# ---------------------------------------------------------------- the wallet ledger


@dataclass
class WalletTraffic:
    """Wallet commands sent straight to the wallet processor, and what their results say the wallets must hold."""

    wallets: list[str]
    commands: list = field(default_factory=list)
    futures: list = field(default_factory=list)
    reservations: dict[str, int] = field(default_factory=dict)
    settled: set[str] = field(default_factory=set)
    unsent: list[str] = field(default_factory=list)
    resent: int = 0
    notes: list[str] = field(default_factory=list)
    answered_at: list[float] = field(default_factory=list)
    """When each result arrived (monotonic): the longest gap is how long the path stood still."""

    def longest_silence(self) -> float:
        times = sorted(self.answered_at)
        return max((b - a for a, b in zip(times, times[1:], strict=False)), default=0.0)

    def next_command(self, rng: random.Random):
        wallet = rng.choice(self.wallets)
        kind = rng.choices(["credit", "debit", "reserve", "settle"], weights=[3, 3, 2, 2])[0]
        meta = new_meta(wallet, LEDGER_TENANT)
        open_reservations = [r for r in self.reservations if r.startswith(wallet) and r not in self.settled]
        if kind == "credit":
            return CreditFunds(meta, amount=rng.randint(1, 500))
        if kind == "debit":
            return DebitFunds(meta, amount=rng.randint(1, 800))
        if kind == "reserve" or not open_reservations:
            reservation = f"{wallet}/r{len(self.reservations)}"
            self.reservations[reservation] = rng.randint(1, 300)
            return ReserveFunds(meta, reservation_id=reservation, amount=self.reservations[reservation])
        reservation = rng.choice(open_reservations)
        self.settled.add(reservation)
        settle = CaptureFunds if rng.random() < 0.5 else ReleaseFunds
        return settle(meta, reservation_id=reservation)


async def open_wallets(client: CommandClient, count: int, start: int) -> WalletTraffic:
    traffic = WalletTraffic([str(uuid.uuid4()) for _ in range(count)])
    for wallet in traffic.wallets:
        (await client.send(OpenWallet(new_meta(wallet, LEDGER_TENANT), currency="EUR"), timeout=120)).raise_for_rejection()
        (await client.send(CreditFunds(new_meta(wallet, LEDGER_TENANT), amount=start), timeout=120)).raise_for_rejection()
    return traffic


async def drive_wallets(
    client: CommandClient, traffic: WalletTraffic, rng: random.Random, per_s: float, stop: asyncio.Event, max_count: int = 600
) -> None:
    """Submit commands at `per_s` a second until `stop` (at most `max_count`); their
    results are collected later (`settle_wallets`). A submit the broker refused is
    kept and asked again there, with the same command id."""
    while not stop.is_set() and len(traffic.commands) < max_count:
        command = traffic.next_command(rng)
        traffic.commands.append(command)
        try:
            future = await client.submit(command)
            future.add_done_callback(lambda _: traffic.answered_at.append(time.monotonic()))
            traffic.futures.append(future)
        except Exception as exc:  # the broker is away (KafkaTimeoutError…): not sent, or not known to be
            traffic.futures.append(None)
            traffic.unsent.append(type(exc).__name__)
        await asyncio.sleep(1.0 / per_s)


async def settle_wallets(client: CommandClient, traffic: WalletTraffic, idle_s: float = 60.0) -> list:
    """Every command's result: its awaited answer while answers keep coming, or else
    asked again with the same command id through a fresh client (the processor
    answers a decided command as `duplicate`, never applies it twice)."""
    pending = {f for f in traffic.futures if f is not None and not f.done()}
    while pending:
        _, still = await asyncio.wait(pending, timeout=idle_s)
        if len(still) == len(pending):
            break  # no answer for idle_s: ask again
        pending = still
    reader = client._reader
    if reader is not None and reader.done():
        traffic.notes.append(f"the command client's result reader had stopped: {reader.exception()!r}")
    asked_again = [
        i for i, f in enumerate(traffic.futures) if f is None or not f.done() or f.cancelled() or f.exception() is not None
    ]
    answers = {}
    if asked_again:
        say(f"wallet: {len(asked_again)} results not received; asking again with the same command ids")
        async with CommandClient(client.settings, client.codec, list(client.hubs.values())) as fresh:
            replies = await asyncio.gather(*[fresh.send(traffic.commands[i], timeout=180) for i in asked_again])
        answers = dict(zip(asked_again, replies, strict=True))
        traffic.resent = len(asked_again)
        traffic.notes.append(
            f"{len(asked_again)} results asked again: {sum(r.duplicate for r in replies)} had been decided before, "
            f"{sum(not r.duplicate for r in replies)} decided only now"
        )
    return [answers[i] if i in answers else f.result() for i, f in enumerate(traffic.futures)]


def expected_wallets(traffic: WalletTraffic, results: list, start: int) -> dict[str, tuple[int, int, int]]:
    """wallet → (balance, reserved, accepted movements), from the accepted results in version order."""
    state = {w: [start, 0, 1] for w in traffic.wallets}
    decided = sorted(
        ((c, r) for c, r in zip(traffic.commands, results, strict=True) if r.accepted),
        key=lambda cr: (cr[0].meta.aggregate_id, cr[1].version),
    )
    for command, _ in decided:
        wallet = state[command.meta.aggregate_id]
        wallet[2] += 1
        if isinstance(command, CreditFunds):
            wallet[0] += command.amount
        elif isinstance(command, DebitFunds):
            wallet[0] -= command.amount
        elif isinstance(command, ReserveFunds):
            wallet[1] += command.amount
        elif isinstance(command, CaptureFunds):
            wallet[0] -= traffic.reservations[command.reservation_id]
            wallet[1] -= traffic.reservations[command.reservation_id]
        elif isinstance(command, ReleaseFunds):
            wallet[1] -= traffic.reservations[command.reservation_id]
    return {w: tuple(v) for w, v in state.items()}


async def ledger_findings(settings, traffic: WalletTraffic, expected: dict, timeout: float = 240.0) -> list[str]:
    """Waits (bounded) for the read store to reach every wallet's last version; returns every broken invariant."""
    schema = settings.pg_schema("wallet")

    async def rows():
        return await fetch(
            settings,
            schema,
            "SELECT w.wallet_id::text AS wallet, w.balance, w.reserved, w.version,"
            " coalesce(sum(l.balance_delta), 0) AS ledger_balance, coalesce(sum(l.reserved_delta), 0) AS ledger_reserved,"
            " count(l.*) AS entries, count(DISTINCT l.event_id) AS distinct_events"
            " FROM wallets w LEFT JOIN ledger l USING (wallet_id) GROUP BY w.wallet_id",
        )

    async def caught_up():
        got = {r["wallet"]: r for r in await rows()}
        return got if all(w in got and got[w]["version"] >= 1 + expected[w][2] for w in traffic.wallets) else None

    try:
        got = await eventually(caught_up, timeout=timeout, interval=1.0)
    except TimeoutError:
        got = {r["wallet"]: r for r in await rows()}
    problems = []
    for wallet, (balance, reserved, movements) in expected.items():
        row = got.get(wallet)
        if row is None:
            problems.append(f"{wallet}: not in the read store")
            continue
        seen = (row["balance"], row["reserved"], row["version"], row["entries"])
        want = (balance, reserved, 1 + movements, movements)
        if seen != want:
            problems.append(f"{wallet}: (balance, reserved, version, ledger rows) {seen} != expected {want}")
        if (row["ledger_balance"], row["ledger_reserved"]) != (row["balance"], row["reserved"]):
            problems.append(f"{wallet}: ledger sums ({row['ledger_balance']}, {row['ledger_reserved']}) != wallet row")
        if row["entries"] != row["distinct_events"]:
            problems.append(f"{wallet}: an event projected twice")
    return problems


async def during(traffic: Callable[[asyncio.Event], Awaitable], chaos: Awaitable, tail_s: float = 3.0):
    """Run `traffic(stop)` while `chaos` happens, stop it `tail_s` after; return the traffic's result."""
    stop = asyncio.Event()
    traffic_task = asyncio.ensure_future(traffic(stop))
    try:
        await chaos
        await asyncio.sleep(tail_s)
    finally:
        stop.set()
    return await traffic_task


# ---------------------------------------------------------------- the whole platform under load


async def under_load(platform: Platform, chaos, disruptions: Callable[[], Awaitable], wallet_start: int = 10_000) -> None:
    """Webhooks at 1.5/s and wallet commands at 5/s through every process of the
    message path while `disruptions()` runs (the test restarts no process), then
    every check: no accepted message lost or answered twice, each charged once,
    the wallets' ledgers exact, the message and wallet read stores equal to a
    replay, no process exited. Records on `chaos` (a ChaosRecord) and asserts."""

    def none_exited() -> None:
        # A process that left cannot recover by itself: waiting for its answers would only hide why.
        dead = [name for name, proc in platform.procs.items() if proc.popen.poll() is not None]
        chaos.figures["processes exited"] = ", ".join(dead) or "none"
        chaos.found += [f"{name} exited and stayed down" for name in dead]
        assert not dead, {name: platform.tail(name) for name in dead}

    async with message_world(platform, PROCESSES) as world:
        settings = world.settings
        async with CommandClient(settings, bootstrap.codec(settings), [bootstrap.hub("wallet")]) as client:
            wallets = await open_wallets(client, 3, wallet_start)

            async def traffic(stop: asyncio.Event):
                return await asyncio.gather(
                    send_traffic(world, per_s=1.5, tag="load", stop=stop, max_count=150),
                    drive_wallets(client, wallets, chaos.rng, per_s=5.0, stop=stop, max_count=500),
                )

            started = time.monotonic()
            hooks, _ = await during(traffic, disruptions(), tail_s=5.0)
            chaos.did.insert(0, "webhooks at 1.5/s and wallet commands at 5/s throughout; no process restarted by the test")
            none_exited()
            results = await settle_wallets(client, wallets)
        found = await check_message_path(world, hooks, timeout=420)
        recovered_s = time.monotonic() - started
        none_exited()
        expected = expected_wallets(wallets, results, wallet_start)
        problems = await ledger_findings(settings, wallets, expected)
        wallet, sagas = await charges(world, found.accepted)
        problems += charge_findings(wallet, sagas, found.answered)
        if found.accepted == found.answered and not found.duplicates:
            await outbound_settled(world, found.accepted)
        message_diff, _ = await asyncio.to_thread(replay_differences, platform, "message")
        wallet_diff, _ = await asyncio.to_thread(replay_differences, platform, "wallet")
        accepted = sum(r.accepted for r in results)
        chaos.figures.update(
            messages=found.line(),
            wallet=f"{len(results)} commands, {accepted} accepted, {len(wallets.unsent)} refused by the broker at submit; "
            + ("; ".join(wallets.notes) or "every result received")
            + f"; longest wait between two wallet answers {wallets.longest_silence():.1f} s",
            **{
                "sagas": saga_states(sagas),
                "replay": f"message {message_diff}, wallet {wallet_diff}",
                "from first webhook to checks done": f"{recovered_s:.0f} s",
            },
        )
        chaos.found += found.problems()
        chaos.found += problems
        for name, diff in (("message", message_diff), ("wallet", wallet_diff)):
            if any(diff.values()):
                chaos.found.append(f"{name} read store differs from its replay: {diff}")
        assert not found.problems(), chaos.found
        assert not problems, problems
        assert not any(message_diff.values()) and not any(wallet_diff.values())
