"""Turns one run's measurements into verdicts against the brief's targets, the
printed table, `results/latest.{json,md}` and a line in `results/history.jsonl`.
Verdicts come from the figures as measured; nothing here adjusts them."""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parent.parent

THROUGHPUT_RATIO = 0.50
INGRESS_RATIO = 0.60
INGRESS_P99_LIMIT_MS = 20.0
E2E_RATIO = 0.50
E2E_RELAY_RATIO = 0.25
P99_LIMIT_MS = 5.0
E2E_P99_LIMIT_MS = 100.0
GATEWAY_P95_LIMIT_MS = 100.0
"""The seed's API target: p95 of a REST call through the gateway."""
E2E_CPU_MS_LIMIT = 8.0
E2E_RECORDS_LIMIT, E2E_TRANSACTIONS_LIMIT = 30, 4
RSS_LIMIT_MB = 150.0
NO_TARGET = "-"
"""Verdict (and target) of a figure the brief sets no target for: reported, not judged."""


@dataclass
class Row:
    benchmark: str
    measured: str
    baseline: str
    ratio: str
    target: str
    verdict: str
    """PASS, MISS, ERROR when the benchmark could not produce a figure, or NO_TARGET."""


def throughput_row(
    name: str,
    unit: str,
    ours: dict | None,
    raw: dict | None,
    raw_unit: str,
    wanted: float = THROUGHPUT_RATIO,
    raw_name: str = "",
    of: str = "raw",
) -> Row:
    target = f">= {wanted:.0%} of {of}"
    if not ours or not raw or not raw.get("per_second"):
        return Row(name, "-", "-", "-", target, "ERROR")
    ratio = ours["per_second"] / raw["per_second"]
    return Row(
        name,
        f"{ours['per_second']:,.{1 if ours['per_second'] < 100 else 0}f} {unit}",
        f"{raw_name}{raw['per_second']:,.0f} {raw_unit}",
        f"{ratio:.1%}" if ratio >= 0.01 else f"{ratio:.3%}",
        target,
        "PASS" if ratio >= wanted else "MISS",
    )


def _p(figures: dict) -> str:
    return f"p50 {figures['p50_ms']:.1f} ms, p99 {figures['p99_ms']:.1f} ms"


def raw_producer(ingress: dict) -> dict | None:
    """The ingress baseline: the faster of the raw producer's two runs (all at once, C in flight)."""
    runs = [r for r in (ingress.get("raw_producer"), ingress.get("raw_producer_in_flight")) if r]
    return max(runs, key=lambda r: r["per_second"]) if runs else None


def _mode(raw: dict | None) -> str:
    in_flight = (raw or {}).get("in_flight", "all")
    return "all at once" if in_flight == "all" else f"{in_flight} in flight"


def ingress_rows(ingress: dict) -> list[Row]:
    """The brief's ingress targets: >= 60 % of a bare aiohttp handler's rate, and p99
    <= 20 ms at half the rate; the raw producer is context (what Kafka takes)."""
    ours, raw, bare = ingress.get("ingress"), raw_producer(ingress), ingress.get("bare_http")
    rows = [
        throughput_row(
            "ingress, signed webhook durable on Kafka", "req/s", ours, bare, "req/s", INGRESS_RATIO, "bare aiohttp ", of="bare"
        )
    ]
    half = ingress.get("ingress_half")
    target = f"p99 <= {INGRESS_P99_LIMIT_MS:.0f} ms at half the rate"
    if half and half.get("p99_ms") is not None:
        rows.append(
            Row(
                f"ingress latency @ {half['target_rate']:,.0f} req/s (half its max)",
                _p(half),
                f"bare at full load: {_p(bare)}" if bare else "-",
                f"p99 x{half['p99_ms'] / bare['p99_ms']:.1f}" if bare else "-",
                target,
                "PASS" if half["p99_ms"] <= INGRESS_P99_LIMIT_MS and half["accepted"] == half["requests"] else "MISS",
            )
        )
    else:
        rows.append(Row("ingress latency at half its max", "-", "-", "-", target, "ERROR"))
    if ours and raw:
        rows.append(
            Row(
                f"ingress vs raw producer ({ours['connections']} connections)",
                f"{ours['per_second']:,.0f} req/s, {_p(ours)}",
                f"raw producer ({_mode(raw)}) {raw['per_second']:,.0f} rec/s",
                f"{ours['per_second'] / raw['per_second']:.1%}",
                NO_TARGET,
                NO_TARGET,
            )
        )
    perf = ingress.get("kafka_perf")
    if ours and perf:
        runs = [ingress.get(k) for k in ("raw_producer", "raw_producer_in_flight")]
        rows.append(
            Row(
                "broker ceiling (Kafka ProducerPerformance, acks=all)",
                f"{perf['per_second']:,.0f} rec/s of {perf['record_size']} B, p99 {perf['p99_ms']} ms",
                "aiokafka " + ", ".join(f"{_mode(r)} {r['per_second']:,.0f} rec/s" for r in runs if r),
                f"ingress {ours['per_second'] / perf['per_second']:.1%}",
                NO_TARGET,
                NO_TARGET,
            )
        )
    return rows


def e2e_rows(e2e: dict) -> list[Row]:
    raw = e2e.get("raw_round_trip") or {}
    rows = [
        throughput_row(
            "end to end, webhook -> Send API reply", "msg/s", e2e.get("max"), raw.get("max"), "rec/s", E2E_RATIO,
            "raw produce->consume ",
        )
    ]  # fmt: skip
    relay = (e2e.get("relay") or {}).get("max")
    rows.append(
        throughput_row(
            "end to end vs a naive relay (one process: verify, ask the bot, Send API)",
            "msg/s",
            e2e.get("max"),
            relay,
            "msg/s",
            E2E_RELAY_RATIO,
            "relay ",
            "the relay",
        )
    )
    per = (e2e.get("max") or {}).get("per_message")
    if per:
        rows.append(
            Row(
                "end to end, platform CPU per message (all platform processes)",
                f"{per['platform_cpu_ms']:.1f} ms",
                "-",
                "-",
                f"<= {E2E_CPU_MS_LIMIT:g} ms",
                "PASS" if per["platform_cpu_ms"] <= E2E_CPU_MS_LIMIT else "MISS",
            )
        )
        rows.append(
            Row(
                "end to end, Kafka records / exactly-once transactions per message",
                f"{per['kafka_records']:g} / {per['transactions']:g}",
                "-",
                "-",
                f"<= {E2E_RECORDS_LIMIT} / <= {E2E_TRANSACTIONS_LIMIT}",
                "PASS" if per["kafka_records"] <= E2E_RECORDS_LIMIT and per["transactions"] <= E2E_TRANSACTIONS_LIMIT else "MISS",
            )
        )
    half, raw_half = e2e.get("half"), raw.get("half")
    target = f"p99 < {E2E_P99_LIMIT_MS:g} ms at half the max rate"
    if not half or not raw_half:
        rows.append(Row("end to end latency at half the max rate", "-", "-", "-", target, "ERROR"))
        return rows
    ok = half["p99_ms"] < E2E_P99_LIMIT_MS and not half["unanswered"]
    missing = f", {half['unanswered']} unanswered" if half["unanswered"] else ""
    rows.append(
        Row(
            f"end to end latency @ {half['target_rate']:g} msg/s ({half['replied']} msgs)",
            f"{_p(half)}{missing}",
            f"raw @ {raw_half['target_rate']:,.0f} rec/s: {_p(raw_half)}",
            f"p99 x{half['p99_ms'] / raw_half['p99_ms']:.0f}" if raw_half["p99_ms"] else "-",
            target,
            "PASS" if ok else "MISS",
        )
    )
    return rows


GATEWAY_CALLS = {"read": "GET a wallet (GetBalance)", "write": "PUT a config value (SetValue, processor decides)"}


def _p3(figures: dict) -> str:
    return f"p50 {figures['p50_ms']:.1f} ms, p95 {figures['p95_ms']:.1f} ms, p99 {figures['p99_ms']:.1f} ms"


def gateway_rows(gateway: dict) -> list[Row]:
    """The brief's API target, p95 <= 100 ms, for a read and a write at a fixed rate through
    the gateway, beside the same requests on the bare aiohttp handler; then CPU per request."""
    rows = []
    for name, call in GATEWAY_CALLS.items():
        ours, bare = gateway.get(name), gateway.get(f"bare_{name}")
        target = f"p95 <= {GATEWAY_P95_LIMIT_MS:g} ms"
        if not ours or not bare or ours.get("p95_ms") is None:
            rows.append(Row(f"gateway {name}: {call}", "-", "-", "-", target, "ERROR"))
            continue
        refused = {k: v for k, v in ours["statuses"].items() if k != "200"}
        ok = ours["p95_ms"] <= GATEWAY_P95_LIMIT_MS and not refused
        rows.append(
            Row(
                f"gateway {name} @ {ours['target_rate']:g} req/s: {call}",
                f"{_p3(ours)}, {ours['achieved_rate']:g} req/s" + (f", non-200: {refused}" if refused else ""),
                f"bare aiohttp: p95 {bare['p95_ms']:.1f} ms, p99 {bare['p99_ms']:.1f} ms",
                f"p95 x{ours['p95_ms'] / bare['p95_ms']:.1f}" if bare["p95_ms"] else "-",
                target,
                "PASS" if ok else "MISS",
            )
        )
    cpu = {n: (gateway.get(n) or {}).get("cpu_ms_per_request", {}).get("gateway") for n in GATEWAY_CALLS}
    bare = {n: (gateway.get(f"bare_{n}") or {}).get("cpu_ms_per_request", {}).get("bare") for n in GATEWAY_CALLS}
    if all(v is not None for v in cpu.values()):
        rows.append(
            Row(
                "gateway CPU per request (gateway process only)",
                ", ".join(f"{n} {v:.2f} ms" for n, v in cpu.items()),
                "bare: " + ", ".join(f"{n} {v:.2f} ms" for n, v in bare.items() if v is not None),
                f"read x{cpu['read'] / bare['read']:.1f}" if bare.get("read") else "-",
                NO_TARGET,
                NO_TARGET,
            )
        )
    return rows


def latency_row(query: dict | None) -> Row:
    target = f"p99 < {P99_LIMIT_MS:g} ms at 1,000 req/s"
    if not query:
        return Row("gRPC GetBalance (open loop)", "-", "-", "-", target, "ERROR")
    ours, raw = query["get_balance"], query["health_check"]
    ok = ours["p99_ms"] < P99_LIMIT_MS and not ours["errors"] and ours["ok"] == ours["requests"]
    return Row(
        f"gRPC GetBalance @ {ours['target_rate']:,.0f} req/s",
        f"p50 {ours['p50_ms']:.2f} ms, p99 {ours['p99_ms']:.2f} ms",
        f"health p50 {raw['p50_ms']:.2f} ms, p99 {raw['p99_ms']:.2f} ms",
        f"p99 x{ours['p99_ms'] / raw['p99_ms']:.1f}" if raw["p99_ms"] else "-",
        target,
        "PASS" if ok else "MISS",
    )


def plaintext_row(tls: dict | None, plain: dict | None) -> Row:
    """The same GetBalance load without TLS, beside the TLS figure: what TLS costs (no target)."""
    if not tls or not plain:
        return Row("gRPC GetBalance without TLS (same run)", "-", "-", "-", "-", "-")
    ours, base = tls["get_balance"], plain["get_balance"]
    return Row(
        "gRPC GetBalance without TLS (same run)",
        f"TLS: p50 {ours['p50_ms']:.2f} ms, p99 {ours['p99_ms']:.2f} ms",
        f"plaintext: p50 {base['p50_ms']:.2f} ms, p99 {base['p99_ms']:.2f} ms",
        f"p50 x{ours['p50_ms'] / base['p50_ms']:.2f}" if base["p50_ms"] else "-",
        "-",
        "-",
    )


def memory_row(process: str, peak_mb: float | None) -> Row:
    target = f"< {RSS_LIMIT_MB:g} MB RSS"
    if peak_mb is None:
        return Row(f"memory: {process}", "-", "-", "-", target, "ERROR")
    return Row(f"memory: {process}", f"{peak_mb:.0f} MB peak", "-", "-", target, "PASS" if peak_mb < RSS_LIMIT_MB else "MISS")


FOOTPRINT_RSS_LIMIT_MB, FOOTPRINT_CPU_LIMIT_PERCENT = 1536.0, 5.0
"""The one-machine layout's targets (issue 16): idle at ≤ 1.5 GB and ≤ 5 % of a core."""


def footprint_rows(footprint: dict) -> list[Row]:
    """The platform idle: every role in one process (judged), beside one process per role (production's layout)."""
    one, per_role = footprint.get("one_process"), footprint.get("process_per_role")
    target = f"≤ {FOOTPRINT_RSS_LIMIT_MB:g} MB, ≤ {FOOTPRINT_CPU_LIMIT_PERCENT:g} % CPU"

    def shown(f: dict) -> str:
        return f"{f['rss_mb']:.0f} MB, {f['idle_cpu_percent']:.1f} % CPU ({f['processes']} proc.)"

    if not one:
        return [Row("footprint idle: every role in one process", "-", "-", "-", target, "ERROR")]
    within = one["rss_mb"] <= FOOTPRINT_RSS_LIMIT_MB and one["idle_cpu_percent"] <= FOOTPRINT_CPU_LIMIT_PERCENT
    ratio = f"{one['rss_mb'] / per_role['rss_mb']:.1%} of RSS" if per_role and per_role.get("rss_mb") else "-"
    rows = [
        Row(
            "footprint idle: every role in one process (make run)",
            shown(one),
            f"one process per role: {shown(per_role)}" if per_role else "-",
            ratio,
            target,
            "PASS" if within else "MISS",
        )
    ]
    if per_role:
        rows.append(Row("footprint idle: one process per role (production)", shown(per_role), "-", "-", NO_TARGET, NO_TARGET))
    return rows


def rows_for(results: dict) -> list[Row]:
    """The rows of the stages that ran (all of them unless `--only`)."""
    commands, replay, query, memory = (results.get(k) or {} for k in ("commands", "replay", "query", "memory"))
    stages = results.get("stages") or ["commands", "ingress", "e2e"]  # runs recorded before the gateway stage
    raw_loop = commands.get("raw_loop")
    fan_out = f"raw loop, {raw_loop['fan_out_records_per_command']:g} rec/cmd: " if raw_loop else ""
    rows = []
    if "commands" in stages:
        rows += [
            throughput_row(
                "command processing, exactly-once", "cmd/s", commands.get("processor"), raw_loop, "cmd/s", raw_name=fan_out
            ),
            throughput_row(
                "projection replay into PostgreSQL", "events/s", replay.get("projector"), replay.get("copy"), "rows/s"
            ),
            latency_row(query or None),
            plaintext_row(query or None, results.get("query_plaintext")),
            *(memory_row(p, memory.get(p)) for p in ("processor", "projector", "grpc")),
        ]
    if "gateway" in stages:
        rows += [*gateway_rows(results.get("gateway") or {}), memory_row("gateway", memory.get("gateway"))]
    if "ingress" in stages:
        rows += [*ingress_rows(results.get("ingress") or {}), memory_row("ingress", memory.get("ingress"))]
    if "e2e" in stages:
        largest = next((p for p in memory if p.startswith("e2e ")), None)
        rows += [
            *e2e_rows(results.get("e2e") or {}),
            memory_row(f"{largest} (largest on the path)" if largest else "e2e path", memory.get(largest)),
        ]
    if "footprint" in stages:
        rows += footprint_rows(results.get("footprint") or {})
    return rows


def table(rows: list[Row]) -> str:
    header = ["benchmark", "measured", "raw baseline", "ratio", "target", "verdict"]
    cells = [header] + [[r.benchmark, r.measured, r.baseline, r.ratio, r.target, r.verdict] for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(header))]
    line = lambda c: "  ".join(v.ljust(w) for v, w in zip(c, widths, strict=False))  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(c) for c in cells[1:])])


def markdown(results: dict, rows: list[Row]) -> str:
    m = results["machine"]
    out = [
        f"# Benchmark results ({results['mode']} run)",
        "",
        f"{results['started_at']} · commit {m['commit']} · {m['cores']} cores ({m['cpu']}), {m['memory_gb']} GB · "
        f"Python {m['python']} · Kafka {m['kafka']} · PostgreSQL {m['postgresql']}",
        "",
        "| benchmark | measured | raw baseline (same run) | ratio | target | verdict |",
        "|---|---|---|---|---|---|",
        *(f"| {r.benchmark} | {r.measured} | {r.baseline} | {r.ratio} | {r.target} | **{r.verdict}** |" for r in rows),
        "",
    ]
    out += ["Context (CPU as % of one core; machine = all cores, any process):", "", *context(results), ""]
    if results.get("findings"):
        out += ["Findings:", "", *(f"- {f}" for f in results["findings"]), ""]
    if results.get("errors"):
        out += ["Errors:", "", *(f"- {e}" for e in results["errors"]), ""]
    out += ["Details (all figures): `latest.json`. Sizes:", "", "```", json.dumps(results["sizes"]), "```", ""]
    return "\n".join(out)


def context(results: dict) -> list[str]:
    lines = []
    commands, replay, query = (results.get(k) or {} for k in ("commands", "replay", "query"))
    if signing := commands.get("event_signing"):
        share = signing.get("sign_share_of_processor_cpu_percent")
        lines.append(
            f"- event signatures: {signing['sign_us_per_event']:g} µs to sign and {signing['verify_us_per_event']:g} µs to "
            f"verify one event ({signing['mean_event_bytes']} B)"
            + (f", {share:g} % of the processor's CPU per command" if share is not None else "")
        )
    if (p := commands.get("processor")) and (cpu := p.get("cpu")):
        lines.append(
            f"- processor: {cpu.get('process_cpu_percent', '-')} % CPU, bench client {cpu.get('client_cpu_percent', '-')} %, "
            f"machine {cpu.get('machine_busy_percent', '-')} % busy; log warnings: {p.get('processor_log_warnings') or 'none'}"
        )
    if raw := commands.get("raw_loop"):
        per_topic = ", ".join(
            f"{topic} {f['per_command']:g} × {f['key_bytes'] + f['value_bytes'] + f['header_bytes']:.0f} B"
            for topic, f in raw["fan_out"].items()
        )
        lines.append(
            f"- raw loop: fan-out per command {per_topic}; {raw['commands_per_transaction']} commands per transaction; "
            f"bench client {raw['cpu'].get('client_cpu_percent', '-')} % CPU"
        )
    if p := replay.get("projector"):
        lines.append(
            f"- replay: {p.get('workers', 1)} worker(s); the first finished after {p['first_batch_seconds']} s "
            f"of {p['seconds']} s (each folds its partitions, then COPYs once)"
        )
    for name in ("get_balance", "health_check"):
        if (q := query.get(name)) and (cpu := q.get("cpu")):
            lines.append(
                f"- {name}: server {cpu.get('process_cpu_percent', '-')} % CPU, "
                f"load generator {cpu.get('client_cpu_percent', '-')} %, machine {cpu.get('machine_busy_percent', '-')} % busy; "
                f"{q['over_5ms']} of {q['requests']} over 5 ms"
            )
    gateway = results.get("gateway") or {}
    for name in GATEWAY_CALLS:
        if (g := gateway.get(name)) and (cpu := g.get("cpu")):
            per = ", ".join(f"{p} {ms:g} ms" for p, ms in g.get("cpu_ms_per_request", {}).items())
            direct = (gateway.get("grpc_direct") or {}).get(name)
            lines.append(
                f"- gateway {name}: CPU per request {per}; gateway {cpu.get('process_cpu_percent', '-')} % CPU, "
                f"load client {cpu.get('client_cpu_percent', '-')} %, machine {cpu.get('machine_busy_percent', '-')} % busy"
                + (f"; straight on gRPC: {_p3(direct)}" if direct else "")
            )
    ingress = results.get("ingress") or {}
    for name in ("ingress", "bare_http"):
        if (i := ingress.get(name)) and (cpu := i.get("cpu")):
            lines.append(
                f"- {name}: server {cpu.get('process_cpu_percent', '-')} % CPU, "
                f"load client {cpu.get('client_cpu_percent', '-')} %, "
                f"machine {cpu.get('machine_busy_percent', '-')} % busy; statuses {i['statuses']}"
            )
    e2e = results.get("e2e") or {}
    if m := e2e.get("max"):
        top = ", ".join(f"{name} {pct} %" for name, pct in list(m.get("cpu_percent", {}).items())[:5])
        lines.append(
            f"- end to end burst: {m['replied']} of {m['messages']} replied in {m['seconds']} s; busiest processes: {top}; "
            f"machine {m.get('machine_busy_percent', '-')} % busy"
        )
    return lines or ["- (none measured)"]


def write(results: dict, rows: list[Row]) -> None:
    RESULTS.mkdir(exist_ok=True)
    results = {**results, "rows": [asdict(r) for r in rows]}
    (RESULTS / "latest.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    (RESULTS / "latest.md").write_text(markdown(results, rows))
    commands, replay, query = (results.get(k) or {} for k in ("commands", "replay", "query"))
    line = {
        "started_at": results["started_at"],
        "mode": results["mode"],
        "commit": results["machine"]["commit"],
        "cores": results["machine"]["cores"],
        "commands_per_s": (commands.get("processor") or {}).get("per_second"),
        "raw_loop_per_s": (commands.get("raw_loop") or {}).get("per_second"),
        "replay_events_per_s": (replay.get("projector") or {}).get("per_second"),
        "copy_rows_per_s": (replay.get("copy") or {}).get("per_second"),
        "grpc_p99_ms": ((query or {}).get("get_balance") or {}).get("p99_ms"),
        "health_p99_ms": ((query or {}).get("health_check") or {}).get("p99_ms"),
        **headline_ingress_and_e2e(results),
        "gateway_read_p95_ms": ((results.get("gateway") or {}).get("read") or {}).get("p95_ms"),
        "gateway_write_p95_ms": ((results.get("gateway") or {}).get("write") or {}).get("p95_ms"),
        "peak_rss_mb": results.get("memory"),
        "verdicts": {r.benchmark: r.verdict for r in rows},
        "findings": len(results.get("findings", [])),
        "errors": len(results.get("errors", [])),
    }
    with open(RESULTS / "history.jsonl", "a") as history:
        history.write(json.dumps(line, default=str) + "\n")


def headline_ingress_and_e2e(results: dict) -> dict:
    ingress, e2e = results.get("ingress") or {}, results.get("e2e") or {}
    raw_trip = e2e.get("raw_round_trip") or {}

    def pick(figures: dict | None, key: str):
        return (figures or {}).get(key)

    return {
        "ingress_per_s": pick(ingress.get("ingress"), "per_second"),
        "ingress_p99_ms": pick(ingress.get("ingress"), "p99_ms"),
        "raw_producer_per_s": pick(raw_producer(ingress), "per_second"),
        "bare_http_per_s": pick(ingress.get("bare_http"), "per_second"),
        "ingress_half_p99_ms": pick(ingress.get("ingress_half"), "p99_ms"),
        "kafka_perf_per_s": pick(ingress.get("kafka_perf"), "per_second"),
        "e2e_max_per_s": pick(e2e.get("max"), "per_second"),
        "e2e_half_p99_ms": pick(e2e.get("half"), "p99_ms"),
        "raw_round_trip_per_s": pick(raw_trip.get("max"), "per_second"),
        "raw_round_trip_half_p99_ms": pick(raw_trip.get("half"), "p99_ms"),
    }


def machine(pg_version: str | None) -> dict:
    cpu = "unknown"
    mem_kb = 0
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        mem_kb = next(int(line.split()[1]) for line in open("/proc/meminfo") if line.startswith("MemTotal:"))
    except (OSError, StopIteration):
        pass
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "kafka": kafka_version(),
        "postgresql": pg_version or "unknown",
        "libraries": {name: _version(name) for name in ("aiokafka", "grpcio", "asyncpg", "fastavro")},
        "commit": _git("rev-parse", "--short", "HEAD")
        + ("+dirty" if _git("status", "--porcelain", "--untracked-files=no") else ""),
    }


def kafka_lib() -> Path:
    """The Kafka jars the local stack runs, found as `infra/local/stack.sh` finds them:
    POSEIDON_KAFKA_LIB, else `<stack dir>/kafka/lib-<version>`, else the project's own
    `.stack/kafka/lib-<version>` (`make setup` fetches them there; a private stack reuses them)."""
    version = re.search(r"<kafka.version>(.+?)</kafka.version>", (ROOT / "infra/local/pom.xml").read_text()).group(1)
    stack = Path(os.environ.get("POSEIDON_STACK_DIR", ROOT / ".stack"))
    shared = ROOT / ".stack" / "kafka" / f"lib-{version}"
    lib = Path(os.environ.get("POSEIDON_KAFKA_LIB", stack / "kafka" / f"lib-{version}"))
    return lib if (lib / ".complete").exists() else shared


def kafka_version() -> str:
    """From the broker jar the local stack runs (`kafka_2.13-<version>.jar`)."""
    jars = sorted(kafka_lib().glob("kafka_2.*-*.jar"))
    jars = [j for j in jars if not any(s in j.name for s in ("-test", "-sources", "-javadoc"))]
    return jars[0].stem.split("-", 1)[1] if jars else "unknown"


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "-"


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""
