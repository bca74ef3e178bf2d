"""`--profile`: attaches py-spy (if installed) to each platform process the bench
starts and, once it has exited, summarises where its CPU samples went. Profiled
figures are perturbed, so a profiled run does not write latest.* or history."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

PROFILES = Path(__file__).resolve().parent / "results" / "profiles"


def py_spy() -> str | None:
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


def attach(pid: int, name: str) -> subprocess.Popen | None:
    """Samples `pid` until it exits; raw collapsed stacks go to profiles/<name>.txt."""
    exe = py_spy()
    if exe is None:
        return None
    PROFILES.mkdir(parents=True, exist_ok=True)
    argv = [exe, "record", "--pid", str(pid), "--format", "raw", "--nolineno", "--nonblocking", "--rate", "250"]
    argv += ["--output", str(PROFILES / f"{name}.txt")]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def summarise(name: str, top: int = 25) -> str:
    """Top frames by inclusive and by self samples, written to profiles/<name>.summary.txt."""
    path = PROFILES / f"{name}.txt"
    if not path.exists():
        return f"{name}: no profile (is py-spy installed in the venv?)"
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        total += n
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    lines = [f"{name}: {total} samples (busy threads only)", "", "inclusive:"]
    lines += [f"  {100 * n / total:5.1f}%  {frame}" for frame, n in inclusive.most_common(top)]
    lines += ["", "self:"]
    lines += [f"  {100 * n / total:5.1f}%  {frame}" for frame, n in own.most_common(top)]
    text = "\n".join(lines) + "\n"
    (PROFILES / f"{name}.summary.txt").write_text(text)
    return text
