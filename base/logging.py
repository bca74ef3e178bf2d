"""structlog configuration for every process: JSON when not on a terminal (or
when asked), coloured console otherwise; correlation ids travel in contextvars.
Library logs (aiokafka, asyncpg) go through the same renderer."""

from __future__ import annotations

import logging
import logging.config
import sys
from typing import Any

import structlog
from opentelemetry import trace

from base.pii import mask_fields, mask_text

# Keys whose values never reach a log line in clear, whoever logs them.
SECRET_KEYS = frozenset(
    {"password", "token", "refresh_token", "access_token", "secret", "totp_code", "authorization", "user_key"}
)
PII_KEYS = frozenset({"email", "phone", "display_name", "text"})
# Free text that may quote what it is about (an exception naming an address): masked by shape.
TEXT_KEYS = frozenset({"error", "reason", "detail"})
_STRUCTLOG_KEYS = frozenset({"event", "level", "timestamp", "logger", "exc_info", "stack_info", "exception"})


def redact(_logger: object, _method: str, event_dict: dict) -> dict:
    """structlog processor: secrets become "[redacted]", PII "[pii]", free-text
    reasons and errors are masked by shape (emails, phones, tokens), and a record
    or list handed to a log call is masked field by field by the same allow-list
    the audit reports use (base.pii)."""
    for key, value in event_dict.items():
        if not value or key in _STRUCTLOG_KEYS:
            continue
        if key in SECRET_KEYS:
            event_dict[key] = "[redacted]"
        elif key in PII_KEYS:
            event_dict[key] = "[pii]"
        elif key in TEXT_KEYS and isinstance(value, str):
            event_dict[key] = mask_text(value)
        elif isinstance(value, dict | list | tuple):
            event_dict[key] = mask_fields(value, key)
    return event_dict


def add_trace_id(_logger: object, _method: str, event_dict: dict) -> dict:
    """structlog processor: the current OpenTelemetry trace's id (when tracing is on
    and a span is current), so a log line leads to its trace and back."""
    if "trace_id" in event_dict:
        return event_dict  # a line about one record of a batch names that record's own trace
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event_dict["trace_id"] = format(context.trace_id, "032x")
    return event_dict


_SHARED = [
    structlog.contextvars.merge_contextvars,
    add_trace_id,
    redact,
    structlog.processors.add_log_level,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    structlog.processors.StackInfoRenderer(),
]


def _renderer(fmt: str) -> list:
    json_output = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    if json_output:
        tracebacks = structlog.processors.ExceptionRenderer(structlog.tracebacks.ExceptionDictTransformer(show_locals=False))
        return [tracebacks, structlog.processors.JSONRenderer()]
    # Never the locals of a failing frame: they hold tokens, secrets and people's messages.
    try:
        readable = structlog.dev.RichTracebackFormatter(show_locals=False)
    except (AttributeError, ImportError, TypeError):  # rich not installed: structlog's plain tracebacks show no locals
        return [structlog.dev.ConsoleRenderer()]
    return [structlog.dev.ConsoleRenderer(exception_formatter=readable)]


def dict_config(level: str = "INFO", fmt: str = "auto") -> dict[str, Any]:
    """A logging.config dict routing stdlib logging through structlog's renderer
    (every process installs it at start)."""
    quiet = max(logging.getLevelName(level), logging.WARNING)
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "structlog": {
                "()": structlog.stdlib.ProcessorFormatter,
                "processors": [structlog.stdlib.ProcessorFormatter.remove_processors_meta, *_renderer(fmt)],
                "foreign_pre_chain": [structlog.stdlib.add_logger_name, *_SHARED],
            }
        },
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "structlog", "stream": "ext://sys.stderr"}},
        "root": {"handlers": ["stderr"], "level": level},
        "loggers": {name: {"level": quiet} for name in ("aiokafka", "kafka")},
    }


def configure(level: str = "INFO", fmt: str = "auto") -> None:
    structlog.configure(
        processors=[*_SHARED, *_renderer(fmt)],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        # Not cached: a logger bound before a reconfiguration (tests' capture_logs,
        # a CLI run in-process) must follow the current configuration, not the first.
        cache_logger_on_first_use=False,
    )
    logging.config.dictConfig(dict_config(level, fmt))


def bind_correlation(correlation_id: str | None, **extra: Any) -> None:
    """Bind the correlation id (and extras) to every log line of the current task."""
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(correlation_id=correlation_id, **extra)
