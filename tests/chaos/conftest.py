"""Chaos test fixtures: one seed per run (POSEIDON_CHAOS_SEED to repeat a run),
each test's record of what it did and found, printed after the test and, with
POSEIDON_CHAOS_REPORT=1, written as a table to bench/results/chaos.md."""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.chaos.world import say

SEED = int(os.environ.get("POSEIDON_CHAOS_SEED") or random.SystemRandom().randrange(1, 1_000_000))
REPORT = Path(__file__).resolve().parents[2] / "bench" / "results" / "chaos.md"


@dataclass
class ChaosRecord:
    """What one chaos test did (`did`), measured (`figures`) and found (`found`)."""

    test: str
    seed: int
    rng: random.Random
    did: list[str] = field(default_factory=list)
    figures: dict[str, object] = field(default_factory=dict)
    found: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    outcome: str = "?"
    seconds: float = 0.0


_RECORDS: list[ChaosRecord] = []


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        item.chaos_outcome = report.outcome
    return report


@pytest.fixture
def chaos(request) -> ChaosRecord:
    name = request.node.name
    record = ChaosRecord(name, SEED, random.Random(f"{SEED}/{name}"))
    say(f"{name}: seed {SEED} (POSEIDON_CHAOS_SEED={SEED} repeats the schedule)")
    yield record
    record.outcome = getattr(request.node, "chaos_outcome", "?")
    record.seconds = time.monotonic() - record.started
    _RECORDS.append(record)
    print(f"\n---- chaos report: {name} ({record.outcome}, {record.seconds:.0f} s, seed {SEED})")
    for line in record.did:
        print(f"  did:   {line}")
    for key, value in record.figures.items():
        print(f"  {key}: {value}")
    for line in record.found or ["nothing lost, nothing doubled"]:
        print(f"  found: {line}")


KEEP_RUNS = 6
"""Runs kept in the report, newest first: a failure stays visible after a passing run."""


@pytest.fixture(scope="session", autouse=True)
def chaos_report_file():
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    yield
    if os.environ.get("POSEIDON_CHAOS_REPORT") != "1" or not _RECORDS:
        return
    section = [
        f"## Run of {started}, seed {SEED}",
        "",
        f"Repeat with `POSEIDON_CHAOS_SEED={SEED} make test-chaos`; {sum(r.seconds for r in _RECORDS):.0f} s of tests.",
        "",
        *table(_RECORDS),
    ]
    earlier = REPORT.read_text().split("\n## Run of ")[1:] if REPORT.exists() else []
    runs = ["\n".join(section) + "\n", *(f"## Run of {run}" for run in earlier)][:KEEP_RUNS]
    header = (
        "# Chaos tests (`make test-chaos`)\n\nWritten by tests/chaos/conftest.py; the latest "
        f"{KEEP_RUNS} runs, newest first. The schedule of kills and outages is seeded: results vary by seed and load.\n\n"
    )
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(header + "\n".join(runs))


def table(records: list[ChaosRecord]) -> list[str]:
    lines = ["| test | result | time | what was done | figures | found |", "|---|---|---|---|---|---|"]
    for r in records:
        figures = "; ".join(f"{k}: {v}" for k, v in r.figures.items())
        lines.append(
            f"| {r.test.removeprefix('test_').replace('_', ' ')} | {r.outcome} | {r.seconds:.0f} s | "
            f"{'; '.join(r.did).replace(':;', ':')} | {figures} | {'; '.join(r.found) or 'nothing lost, nothing doubled'} |"
        )
    return lines
