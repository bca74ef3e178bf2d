"""The benchmark's pure helpers: percentiles, open-loop schedules, burst sizing,
and reading Kafka's ProducerPerformance summary."""

from __future__ import annotations

import math

import pytest

from bench.commands import records_due, resized
from bench.e2e import MAX_BURST, MIN_MESSAGES, burst_size
from bench.ingress import parse_producer_performance
from bench.load import latency_figures, percentile, schedule


def test_percentile_is_the_nearest_rank():
    values = list(range(1, 101))
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert percentile([7.0], 99) == 7.0
    assert math.isnan(percentile([], 50))


def test_latency_figures_are_milliseconds_of_the_sorted_samples():
    figures = latency_figures([0.003, 0.001, 0.002])
    assert (figures["samples"], figures["p50_ms"], figures["max_ms"]) == (3, 2.0, 3.0)


def test_a_schedule_spaces_requests_by_the_inverse_rate_from_its_start():
    assert schedule(4.0, 3, start=10.0) == [10.0, 10.25, 10.5]
    with pytest.raises(ValueError):
        schedule(0, 3, start=0.0)


def test_a_burst_lasts_about_the_asked_seconds_within_its_bounds():
    assert burst_size(2.2, 20) == 44
    assert burst_size(0.1, 20) == MIN_MESSAGES
    assert burst_size(10_000, 20) == MAX_BURST
    assert burst_size(0.1, 20, least=5) == 5


def test_the_raw_loop_writes_the_processors_fan_out_in_whole_records():
    assert [records_due(2.0, i) for i in range(3)] == [2, 2, 2]
    spread = [records_due(0.25, i) for i in range(8)]
    assert spread == [0, 0, 0, 1, 0, 0, 0, 1]
    assert sum(records_due(0.984, i) for i in range(8_200)) == 8_068  # floor(8,200 × 0.984)


def test_a_raw_key_keeps_its_aggregate_and_takes_the_mean_size():
    assert resized(b"abc", 7) == b"abcabca"
    assert resized(b"abcdef", 2) == b"ab"
    assert resized(b"", 3) == b"kkk"


def test_the_producer_performance_summary_line_becomes_numbers():
    output = (
        "149312 records sent, 29862.4 records/sec (15.17 MB/sec), 95.3 ms avg latency, 700.0 ms max latency.\n"
        "200000 records sent, 28752.221967 records/sec (14.61 MB/sec), 312.80 ms avg latency, 533.00 ms max latency, "
        "331 ms 50th, 473 ms 95th, 484 ms 99th, 530 ms 99.9th.\n"
    )
    figures = parse_producer_performance(output)
    assert figures["records"] == 200000 and figures["per_second"] == pytest.approx(28752.22) and figures["p99_ms"] == 484
