"""The gateway benchmark's pure parts: the requests it sends and the verdicts it gives."""

from __future__ import annotations

import json

from bench.commands import Wallet
from bench.gateway import WRITE_KEYS, reads, writes
from bench.report import GATEWAY_P95_LIMIT_MS, gateway_rows


def _figures(p95_ms: float, statuses: dict[str, int] | None = None, cpu: dict | None = None) -> dict:
    return {
        "target_rate": 200,
        "achieved_rate": 199.5,
        "statuses": statuses or {"200": 1000},
        "p50_ms": p95_ms / 2,
        "p95_ms": p95_ms,
        "p99_ms": p95_ms * 2,
        "cpu_ms_per_request": cpu or {},
    }


def test_the_reads_ask_each_wallet_in_its_own_tenant():
    calls = reads([Wallet("tenant-1", "w-1"), Wallet("tenant-2", "w-2")])
    assert [(c.method, c.path, c.body) for c in calls] == [
        ("GET", "/v1/tenants/tenant-1/wallets/w-1", b""),
        ("GET", "/v1/tenants/tenant-2/wallets/w-2", b""),
    ]


def test_every_write_sets_a_new_value_on_one_of_a_fixed_set_of_keys():
    calls = writes(WRITE_KEYS * 2, "t")
    assert {c.method for c in calls} == {"PUT"}
    assert len({c.path for c in calls}) == WRITE_KEYS
    bodies = [json.loads(c.body) for c in calls]
    assert len({b["value_json"] for b in bodies}) == len(calls)
    assert all(json.loads(b["value_json"]).startswith("t ") and b["scope_kind"] == "SCOPE_KIND_TENANT" for b in bodies)


def test_a_call_passes_at_the_p95_limit_and_misses_above_it_or_with_any_refusal():
    gateway = {
        "read": _figures(GATEWAY_P95_LIMIT_MS, cpu={"gateway": 0.5}),
        "bare_read": _figures(2.0, cpu={"bare": 0.1}),
        "write": _figures(GATEWAY_P95_LIMIT_MS + 1, cpu={"gateway": 0.8}),
        "bare_write": _figures(2.0, cpu={"bare": 0.1}),
    }
    read, write, cpu = gateway_rows(gateway)
    assert (read.verdict, write.verdict) == ("PASS", "MISS")
    assert read.ratio == "p95 x50.0"
    assert cpu.measured == "read 0.50 ms, write 0.80 ms" and cpu.ratio == "read x5.0"

    gateway["read"] = _figures(1.0, statuses={"200": 990, "429": 10})
    assert gateway_rows(gateway)[0].verdict == "MISS"


def test_a_missing_figure_is_an_error_not_a_pass():
    rows = gateway_rows({"read": _figures(1.0)})
    assert [r.verdict for r in rows] == ["ERROR", "ERROR"]
