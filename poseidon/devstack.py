"""`make run`'s last step: waits until every process of the local platform
answers its health endpoint, then prints where everything listens. Development
tooling only; production uses each process's /healthz through its orchestrator."""

from __future__ import annotations

import ssl
import sys
import time
import urllib.request

from base.settings import Settings
from infra import tls
from poseidon import bootstrap


def _healthy(url: str, context: ssl.SSLContext | None = None) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as reply:
            return reply.status == 200
    except OSError:
        return False


def endpoints(s: Settings) -> list[tuple[str, str, str]]:
    """(process, health url, what it serves)."""
    rows = []
    for hub in bootstrap.hubs():
        for role in ("processor", "projector", "grpc"):
            serves = f"gRPC {s.grpc_host}:{s.grpc_port(hub)}" if role == "grpc" else ""
            rows.append((f"{hub}-{role}", f"http://{s.ops_host}:{s.ops_port_for(role, hub)}/healthz", serves))
    web = tls.http_scheme(s)
    rows.append(
        (
            "ingress",
            f"{web}://{s.ingress_host}:{s.ingress_port}/healthz",
            f"webhooks {web}://{s.ingress_host}:{s.ingress_port}/webhooks/facebook",
        )
    )
    rows.append(("router", f"http://{s.ops_host}:{s.ops_port_for('router', 'message')}/healthz", "routing decisions"))
    rows.append(("saga-driver", f"http://{s.ops_host}:{s.ops_port_for('router', 'saga')}/healthz", "saga steps and deadlines"))
    rows.append(
        (
            "dashboard",
            f"{web}://{s.ops_host}:{s.dashboard_port}/healthz",
            f"operator dashboard {web}://{s.ops_host}:{s.dashboard_port}/",
        )
    )
    rows.append(
        (
            "gateway",
            f"http://{s.ops_host}:{s.ops_port_at('gateway', 0)}/healthz",
            f"REST API {web}://{s.gateway_host}:{s.gateway_port}/openapi.json",
        )
    )
    for name, spec in bootstrap.spokes().items():
        rows.append((f"spoke-{name}", f"http://{s.ops_host}:{s.ops_port_at('spoke', spec.ops_index)}/healthz", ""))
    return rows


def scrape_targets(s: Settings) -> list[tuple[str, str]]:
    """(process, host:port) of every ops endpoint serving /metrics: what Prometheus scrapes."""
    targets = []
    for hub in bootstrap.hubs():
        for role in ("processor", "projector", "grpc"):
            targets.append((f"{hub}-{role}", f"{s.ops_host}:{s.ops_port_for(role, hub)}"))
    targets.append(("ingress", f"{s.ops_host}:{s.ops_port_at('ingress', 0)}"))
    targets.append(("gateway", f"{s.ops_host}:{s.ops_port_at('gateway', 0)}"))
    targets.append(("router", f"{s.ops_host}:{s.ops_port_for('router', 'message')}"))
    targets.append(("saga-driver", f"{s.ops_host}:{s.ops_port_for('router', 'saga')}"))
    for name, spec in bootstrap.spokes().items():
        targets.append((f"spoke-{name}", f"{s.ops_host}:{s.ops_port_at('spoke', spec.ops_index)}"))
    return targets


def prometheus_config(s: Settings, rules: str, interval_s: int = 15) -> str:
    """A Prometheus configuration scraping every role of the platform `s` describes (job
    `poseidon`, one target per process, labelled with it) and loading the `rules` file."""
    lines = [
        "global:",
        f"  scrape_interval: {interval_s}s",
        f"  evaluation_interval: {interval_s}s",
        f"rule_files: [{rules}]",
        "scrape_configs:",
        "  - job_name: poseidon",
        "    static_configs:",
    ]
    for process, target in scrape_targets(s):
        lines += [f"      - targets: ['{target}']", f"        labels: {{process_name: {process}}}"]
    return "\n".join(lines) + "\n"


def main(timeout_s: float = 90.0) -> None:
    s = bootstrap.settings()
    deadline = time.time() + timeout_s
    context = ssl.create_default_context(cafile=str(tls.files(s).ca)) if s.http_tls else None
    for name, url, serves in endpoints(s):
        while not _healthy(url, context):
            if time.time() > deadline:
                sys.exit(f"{name} not healthy at {url} after {timeout_s:.0f}s; see .run/{name}.log")
            time.sleep(0.5)
        print(f"  {name:<18} healthy  {url:<40} {serves}")
    print(f"  Kafka {s.kafka_bootstrap}   PostgreSQL {s.pg_dsn}   S3 {s.s3_url}")
    print(f"  stand-ins: Facebook Graph {s.facebook_graph_url}  Botpress {s.botpress_url}  Odoo {s.odoo_url}")


if __name__ == "__main__":
    main()
