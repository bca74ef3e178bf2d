"""The platform idle on one machine, in its two layouts: every role in one process
(`poseidon together --all`, what `make run` starts) and one process per role (what
production runs, one role per pod). Each layout is started in the run's namespace
with its own ports, left to settle, then its resident memory (VmRSS, summed over its
processes) and its CPU over an idle window (% of one core) are read. Nothing is sent
to it: the idle cost of keeping the platform up. Outside systems are not started
(no spoke calls one while idle); their URLs point at a closed loopback port."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bench import procs
from poseidon import bootstrap

SETTLE_S, WINDOW_S = 25.0, 20.0
SMOKE_SETTLE_S, SMOKE_WINDOW_S = 8.0, 2.0
SMALL_RSS_LIMIT_MB, SMALL_CPU_LIMIT_PERCENT = 1536.0, 5.0
"""Issue 16's targets for the one-machine layout: ≤ 1.5 GB, ≤ 5 % of a core idle."""


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def layout_env(env: dict[str, str]) -> dict[str, str]:
    """The run's environment with every public and gRPC port of its own, and any free ops port per role."""
    ports = {f"POSEIDON_GRPC_PORT_{hub.upper()}": str(procs.free_port()) for hub in bootstrap.hubs()}
    closed = f"http://127.0.0.1:{procs.free_port()}"
    return {
        **env,
        **ports,
        "POSEIDON_OPS_PORT": "0",
        "POSEIDON_INGRESS_PORT": str(procs.free_port()),
        "POSEIDON_GATEWAY_PORT": str(procs.free_port()),
        "POSEIDON_DASHBOARD_PORT": str(procs.free_port()),
        "POSEIDON_FACEBOOK_GRAPH_URL": closed,
        "POSEIDON_BOTPRESS_URL": closed,
        "POSEIDON_ODOO_URL": closed,
    }


async def measure_layout(name: str, argvs: list[list[str]], env: dict[str, str], log_dir: Path, smoke: bool) -> dict:
    """Start `argvs` (one process each), let them settle, read memory and idle CPU; stop them."""
    settle, window = (SMOKE_SETTLE_S, SMOKE_WINDOW_S) if smoke else (SETTLE_S, WINDOW_S)
    services = [procs.Service(f"footprint-{name}-{n}", argv, env, log_dir).start() for n, argv in enumerate(argvs)]
    try:
        await asyncio.sleep(settle)
        for svc in services:
            svc.check_alive()
        before = [procs.cpu_seconds(svc.pid) or 0.0 for svc in services]
        with procs.CpuWindow() as machine:
            await asyncio.sleep(window)
        after = [procs.cpu_seconds(svc.pid) or 0.0 for svc in services]
        for svc in services:
            svc.check_alive()
        memory = [rss_mb(svc.pid) or 0.0 for svc in services]
        return {
            "processes": len(services),
            "rss_mb": round(sum(memory), 1),
            "largest_process_rss_mb": round(max(memory), 1),
            "idle_cpu_percent": round(100 * (sum(after) - sum(before)) / window, 2),
            "settle_s": settle,
            "window_s": window,
            "machine_busy_percent": machine.figures.get("machine_busy_percent"),
        }
    finally:
        procs.stop_all(services)


async def measure(env: dict[str, str], log_dir: Path, smoke: bool = False) -> dict:
    """Both layouts, one after the other, each with ports of its own."""
    from poseidon.roles import every_role

    roles = every_role()
    per_role = []
    for spec in roles:
        role, _, name = spec.partition(":")
        per_role.append(procs.poseidon(role, name) if name else procs.poseidon(role))
    results = {}
    results["one_process"] = await measure_layout(
        "together", [procs.poseidon("together", "--all")], layout_env(env), log_dir, smoke
    )
    results["process_per_role"] = await measure_layout("roles", per_role, layout_env(env), log_dir, smoke)
    results["roles"] = len(roles)
    return results
