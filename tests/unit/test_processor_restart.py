"""A crashed faust worker is started again in the same process: same PID (PID
files and supervisors stay right), same command line, a back-off counter that
grows with each crash in a row."""

from __future__ import annotations

import os
import subprocess
import sys

from infra.processor import RESTARTS_ENV

SCRIPT = f"""
import os, sys
from infra.processor import restart_after_crash
print("run", os.getpid(), os.environ.get("{RESTARTS_ENV}", "0"), sys.argv[1:], flush=True)
if os.environ.get("{RESTARTS_ENV}") == "1":
    sys.exit(0)
restart_after_crash("test-processor", 1, ran_s=0.5)
"""


def test_a_crash_restarts_the_same_command_in_the_same_process_and_counts_the_restart():
    env = {k: v for k, v in os.environ.items() if k != RESTARTS_ENV}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, "processor", "wallet"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    runs = [line.split(" ", 3) for line in done.stdout.splitlines() if line.startswith("run ")]
    assert len(runs) == 2
    (_, pid1, count1, args1), (_, pid2, count2, args2) = runs
    assert pid1 == pid2 and (count1, count2) == ("0", "1")
    assert args1 == args2 == "['processor', 'wallet']"
    assert "processor crashed; restarting" in done.stdout + done.stderr
