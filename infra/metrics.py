"""The Prometheus metrics every long-running process shares. Defined once so a
ninth hub gets the same names and labels for free."""

import platform
from importlib import metadata

from prometheus_client import Counter, Gauge, Histogram, Info

RECORDS_PROCESSED = Counter(
    "poseidon_records_processed_total", "Records handled, by process and outcome.", ["process", "hub", "outcome"]
)
FAILURES = Counter("poseidon_failures_total", "Records that failed processing, by reason.", ["process", "hub", "reason"])
DEAD_LETTERS = Counter("poseidon_dead_letters_total", "Records sent to a dead-letter topic.", ["topic"])
RETRIES = Counter(
    "poseidon_retries_total", "Records retried because a dependency of ours could not answer.", ["process", "hub", "error"]
)
LATENCY = Histogram(
    "poseidon_processing_seconds",
    "Time to handle one record (processor) or one batch (projector).",
    ["process", "hub"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
LAG = Gauge(
    "poseidon_consumer_lag", "Records between the position and the end of a partition.", ["process", "topic", "partition"]
)
GRPC_REQUESTS = Counter("poseidon_grpc_requests_total", "gRPC calls by method and status code.", ["method", "code"])
GRPC_LATENCY = Histogram(
    "poseidon_grpc_seconds",
    "gRPC call latency by method.",
    ["method"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5),
)
HTTP_API_REQUESTS = Counter(
    "poseidon_gateway_requests_total", "REST API requests by operation and HTTP status.", ["operation", "status"]
)
HTTP_API_LATENCY = Histogram(
    "poseidon_gateway_seconds",
    "REST API latency by operation (the hub's gRPC call included).",
    ["operation"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
EVENTS_WRITTEN = Counter(
    "poseidon_events_written_total",
    "Events committed by a hub's processor, by event type (a hub's event types are few and fixed: saga failures and"
    " operator waits are counted here too).",
    ["hub", "event_type"],
)


def package_version() -> str:
    try:
        return metadata.version("poseidon-hub")
    except metadata.PackageNotFoundError:
        return "unknown"


BUILD = Info("poseidon_build", "The running build: package version and Python.")
BUILD.info({"version": package_version(), "python": platform.python_version()})
