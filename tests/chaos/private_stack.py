"""A Kafka + PostgreSQL stack of the test's own (infra/local/stack.sh in a
temporary folder, on free loopback ports), so that restarting the broker or the
database disturbs nobody else's tests. Stopped through its own PID files."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from base.settings import Settings
from poseidon import bootstrap
from tests.harness import ROOT, free_port

STACK_SH = ROOT / "infra" / "local" / "stack.sh"


class PrivateStack:
    """`up`, `down` and the single-service stops and starts of stack.sh, on a folder and ports of its own."""

    def __init__(self) -> None:
        # PostgreSQL runs as the 'postgres' user when we are root: the folder must be reachable for it.
        self.dir = Path(tempfile.mkdtemp(prefix="poseidon-chaos-stack-"))
        self.dir.chmod(0o755)
        self.kafka_port, self.controller_port, self.pg_port = free_port(), free_port(), free_port()
        self.env = {
            **os.environ,
            "POSEIDON_STACK_DIR": str(self.dir),
            "POSEIDON_KAFKA_PORT": str(self.kafka_port),
            "POSEIDON_KAFKA_CONTROLLER_PORT": str(self.controller_port),
            "POSEIDON_PG_PORT": str(self.pg_port),
            "POSEIDON_KAFKA_HEAP": "512m",
        }

    def run(self, action: str) -> float:
        """One stack.sh action; returns how long it took."""
        started = time.monotonic()
        done = subprocess.run([str(STACK_SH), action], env=self.env, capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            raise RuntimeError(f"stack.sh {action} failed ({done.returncode}):\n{done.stderr[-3000:]}")
        return time.monotonic() - started

    def settings(self) -> Settings:
        return bootstrap.settings().with_(
            kafka_bootstrap=f"127.0.0.1:{self.kafka_port}",
            pg_dsn=f"postgresql://poseidon@127.0.0.1:{self.pg_port}/poseidon",
        )

    def destroy(self) -> None:
        try:
            self.run("down")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
