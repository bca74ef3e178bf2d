"""The attack suite's ledger: every test records what it tried (area, attack,
number of cases) through the `attacks` fixture, and whether it held is the
test's own outcome. With POSEIDON_ATTACK_REPORT=1 (`make test-attacks`) the
ledger is written to bench/results/attacks.md and .json at the end of the
session; a plain `make test` writes nothing."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

REPORT_ENV = "POSEIDON_ATTACK_REPORT"
RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results"


@dataclass
class Row:
    area: str
    attack: str
    expected: str
    """What "held" means for this attack, in an operator's words."""
    test: str
    cases: int = 0
    held: bool | None = None
    """Filled in from the test's outcome; None while the test has not finished."""


@dataclass
class Ledger:
    rows: dict[tuple[str, str, str], Row] = field(default_factory=dict)
    outcomes: dict[str, bool] = field(default_factory=dict)

    def finish(self) -> list[Row]:
        for row in self.rows.values():
            row.held = self.outcomes.get(row.test, False)
        return list(self.rows.values())


LEDGER = pytest.StashKey[Ledger]()


class Attacks:
    """What one test hands the ledger: `attacks.row(area, attack, expected)`
    returns the row (the same one on every call with the same key) whose
    `cases` the test counts up as it tries them."""

    def __init__(self, ledger: Ledger, test: str):
        self.ledger, self.test = ledger, test

    def row(self, area: str, attack: str, expected: str) -> Row:
        key = (self.test, area, attack)
        if key not in self.ledger.rows:
            self.ledger.rows[key] = Row(area, attack, expected, self.test)
        return self.ledger.rows[key]

    def tried(self, area: str, attack: str, expected: str, cases: int = 1) -> Row:
        row = self.row(area, attack, expected)
        row.cases += cases
        return row


def pytest_configure(config: pytest.Config) -> None:
    config.stash[LEDGER] = Ledger()


@pytest.fixture
def attacks(request: pytest.FixtureRequest) -> Attacks:
    return Attacks(request.config.stash[LEDGER], request.node.nodeid)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    if report.when == "call" or (report.when == "setup" and not report.passed):
        item.config.stash[LEDGER].outcomes[item.nodeid] = report.passed
    return report


def pytest_sessionfinish(session: pytest.Session) -> None:
    if os.environ.get(REPORT_ENV) != "1":
        return
    rows = session.config.stash[LEDGER].finish()
    if not rows:
        return
    RESULTS.mkdir(parents=True, exist_ok=True)
    meta = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": _commit(),
        "python": platform.python_version(),
        "attacks": len(rows),
        "cases": sum(r.cases for r in rows),
        "held": sum(1 for r in rows if r.held),
    }
    (RESULTS / "attacks.json").write_text(json.dumps({**meta, "rows": [asdict(r) for r in rows]}, indent=2) + "\n")
    (RESULTS / "attacks.md").write_text(_markdown(meta, rows))


def _markdown(meta: dict, rows: list[Row]) -> str:
    lines = [
        "# Attack suite results",
        "",
        f"`make test-attacks` · {meta['generated_at']} · commit {meta['commit']} · Python {meta['python']}",
        "",
        f"{meta['attacks']} attacks, {meta['cases']:,} cases, {meta['held']} of {meta['attacks']} held.",
        "",
        "| area | attack | cases | expected | held | test |",
        "|---|---|---:|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: (r.area, r.test, r.attack)):
        test = r.test.split("::", 1)[-1]
        lines.append(
            f"| {r.area} | {_cell(r.attack)} | {r.cases:,} | {_cell(r.expected)} | {'yes' if r.held else '**NO**'} | `{test}` |"
        )
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5).stdout.strip()
    except OSError:
        return "unknown"
