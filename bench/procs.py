"""Platform processes the benchmark starts (`poseidon processor|grpc …`, the
replay child): started with the bench's environment, watched for peak memory,
and always stopped by their own PID (terminate, then kill)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests import harness

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A port free now, below the kernel's ephemeral range (an outgoing connection of
    another child cannot take it before its server binds), and not handed out before
    in this run: two children told the same port means one fails to bind."""
    port = harness.free_port(_HANDED_OUT)
    _HANDED_OUT.add(port)
    return port


def peak_rss_mb(pid: int) -> float | None:
    """VmHWM: the kernel's own high-water mark of resident memory for `pid`."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time the process has used so far (/proc/<pid>/stat)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_cpu() -> tuple[int, int]:
    """(busy, total) jiffies over all cores since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


class CpuWindow:
    """CPU use during a window: the whole machine (all cores, any process), one
    child process and this process, each as a percentage of one core's time
    except `machine_busy_percent` (of all cores). Context for noisy figures."""

    def __init__(self, pid: int | None = None):
        self.pid = pid
        self.figures: dict[str, float] = {}

    def __enter__(self) -> CpuWindow:
        self._wall = time.perf_counter()
        self._machine = machine_cpu()
        self._child = cpu_seconds(self.pid) if self.pid else None
        self._own = time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        wall = time.perf_counter() - self._wall
        busy, total = machine_cpu()
        if total > self._machine[1]:
            self.figures["machine_busy_percent"] = round(100 * (busy - self._machine[0]) / (total - self._machine[1]), 1)
        child = cpu_seconds(self.pid) if self.pid else None
        if child is not None and self._child is not None:
            self.figures["process_cpu_percent"] = round(100 * (child - self._child) / wall, 1)
        self.figures["client_cpu_percent"] = round(100 * (time.process_time() - self._own) / wall, 1)


class Service:
    """One child process; output goes to a log file so a failure can show its tail."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path, profile: bool = False):
        self.name, self.argv, self.env, self.profile = name, argv, env, profile
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen | None = None
        self.profiler: subprocess.Popen | None = None
        self.peak_mb: float | None = None
        self.health_url: str | None = None
        """Where the process answers 200 once ready (its ops /healthz), if it has one."""

    def start(self) -> Service:
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.argv, env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        if self.profile:
            from bench.profile import attach

            self.profiler = attach(self.proc.pid, self.name)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def check_alive(self) -> None:
        if not self.alive():
            raise RuntimeError(f"{self.name} exited early (code {self.proc.returncode if self.proc else None}):\n{self.tail()}")

    def sample_peak(self) -> float | None:
        """Read the peak now (it is lost once the process has exited)."""
        if self.alive():
            value = peak_rss_mb(self.pid)
            if value is not None:
                self.peak_mb = max(self.peak_mb or 0.0, value)
        return self.peak_mb

    def cpu_seconds(self) -> float | None:
        return cpu_seconds(self.pid) if self.alive() else None

    def warnings(self) -> dict[str, int]:
        """Warning/error log events by message (JSON log lines), e.g. faust's
        'Timer commit is overlapping': evidence of where a process struggled."""
        counts: dict[str, int] = {}
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return counts
        for line in text.splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict) and event.get("level") in ("warning", "error", "critical"):
                key = re.sub(r"[0-9][0-9.e-]*", "N", str(event.get("event", "")))[:100]
                counts[key] = counts.get(key, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: -kv[1]))

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 15.0) -> None:
        self.terminate()
        self.wait_stopped(timeout)

    def terminate(self) -> None:
        """SIGTERM (its peak memory read first); no-op once it has exited."""
        if self.alive():
            self.sample_peak()
            self.proc.send_signal(signal.SIGTERM)

    def wait_stopped(self, timeout: float) -> None:
        """Wait up to `timeout` for it to exit after terminate(), then SIGKILL."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._stop_profiler()

    def _stop_profiler(self) -> None:
        """py-spy writes its file and exits once its target is gone."""
        if self.profiler is None or self.profiler.poll() is not None:
            return
        try:
            self.profiler.wait(15)
        except subprocess.TimeoutExpired:
            self.profiler.send_signal(signal.SIGINT)
            try:
                self.profiler.wait(10)
            except subprocess.TimeoutExpired:
                self.profiler.kill()


def platform_env(extra: dict[str, str]) -> dict[str, str]:
    """The bench's own environment (so POSEIDON_KAFKA_BOOTSTRAP / _PG_DSN still
    apply) with the run's namespace, log level and ports on top."""
    env = dict(os.environ)
    env.update(extra)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def poseidon(*args: str) -> list[str]:
    return [PYTHON, "-m", "poseidon.cli", *args]


async def wait_until(predicate, timeout: float, what: str, service: Service | None = None, interval: float = 0.2) -> None:
    """Poll an async predicate until true; fails fast if `service` died meanwhile."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service is not None:
            service.check_alive()
        try:
            if await predicate():
                return
        except Exception:  # not up yet: connection refused, unknown topic, …
            pass
        await asyncio.sleep(interval)
    raise TimeoutError(f"{what} not ready after {timeout:.0f}s" + (f":\n{service.tail()}" if service else ""))


def kafka_tool(main_class: str, args: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
    """One of Kafka's own tools (ProducerPerformance…) from the jars the local stack runs;
    a small heap, output captured. Raises on timeout, no Java or no jars."""
    from bench.report import kafka_lib

    lib = kafka_lib()
    if not (lib / ".complete").exists():
        raise FileNotFoundError(f"Kafka's jars are missing in {lib}: run `make setup`")
    argv = ["java", "-Xmx256m", "-cp", f"{lib}/*", main_class, *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


async def http_ok(url: str) -> bool:
    """Whether GET `url` answers 200 (an ops /healthz, a stand-in's control API)."""
    import aiohttp

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        async with session.get(url) as answer:
            return answer.status == 200


def stop_all(services: list[Service], timeout: float = 15.0) -> None:
    """Stops many children at once: SIGTERM to all, then each gets what is left of
    `timeout` before SIGKILL (faust workers take seconds to stop; one by one adds up)."""
    for svc in services:
        svc.terminate()
    deadline = time.monotonic() + timeout
    for svc in services:
        svc.wait_stopped(max(deadline - time.monotonic(), 0.1))


async def listening(url: str) -> bool:
    """Whether something accepts TCP connections at `url`'s host and port."""
    from urllib.parse import urlsplit

    where = urlsplit(url)
    _, writer = await asyncio.open_connection(where.hostname, where.port)
    writer.close()
    await writer.wait_closed()
    return True
