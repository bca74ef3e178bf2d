"""HTML of the dashboard's pages, rendered from the Jinja2 templates in
`templates/` with autoescaping always on: a value can only reach a page as
escaped text, never as markup, and no template marks anything `|safe`. Every
payload summary goes through PII masking (`|masked`). No I/O but reading the templates."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from sagas.dashboard.rules import (
    CSRF_FIELD,
    OPERATOR_TENANT,
    STATES,
    SagaFilter,
    StatsWindow,
    duration_text,
    mask_summary,
    seconds_text,
)

TEMPLATES = Path(__file__).parent / "templates"


def when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") + " UTC" if value else ""


def _segment(value: object) -> str:
    """One URL path segment: `/`, `:`, `?`, `#` and the rest percent-encoded, so a
    value after `/sagas/` can neither leave that path nor start a scheme."""
    return quote(str(value), safe="")


# Autoescape is True for every template whatever its name (not select_autoescape
# by extension): a fragment template is escaped as surely as a page.
ENV = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
ENV.filters.update(when=when, masked=mask_summary, duration=duration_text, segment=_segment, seconds=seconds_text)
ENV.globals.update(csrf_field=CSRF_FIELD, states=tuple(STATES), operator_tenant=OPERATOR_TENANT, live="", operator="", csrf="")


def render(template: str, **values) -> str:
    return ENV.get_template(template).render(**values)


def login_page(error: str = "", csrf: str = "", notice: str = "") -> str:
    return render("login.html", title="Log in", error=error, notice=notice, csrf=csrf)


def message_page(title: str, message: str, *, operator: str, csrf: str) -> str:
    """A short refusal (bad filter, no such saga) inside the usual frame."""
    return render("message.html", title=title, message=message, operator=operator, csrf=csrf)


def list_page(rows, total: int, counts: Mapping[str, int], f: SagaFilter, *, operator: str, csrf: str, message: str = "") -> str:
    return render(
        "list.html",
        title="Sagas",
        rows=rows,
        total=total,
        pages=max(1, -(-total // f.page_size)),
        counts=counts,
        f=f,
        operator=operator,
        csrf=csrf,
        message=message,
        live="list",
    )


def timeline_fragment(events) -> str:
    return render("timeline.html", events=events)


def saga_page(saga, events, routing, *, operator: str, csrf: str, message: str = "", reset_steps=(), trace_url: str = "") -> str:
    return render(
        "saga.html",
        trace_url=trace_url,
        title=f"Saga {saga['saga_id']}",
        saga=saga,
        events=events,
        routing=routing,
        operator=operator,
        csrf=csrf,
        message=message,
        reset_steps=tuple(reset_steps),
        live="saga",
    )


def stats_page(types, window: StatsWindow, *, operator: str, csrf: str) -> str:
    return render("stats.html", title="Statistics", types=types, window=window, operator=operator, csrf=csrf)


def dead_letters_page(letters, *, operator: str, csrf: str, message: str = "", problem: str = "") -> str:
    return render(
        "dead_letters.html", title="Dead letters", letters=letters, operator=operator, csrf=csrf, message=message, problem=problem
    )


def channels_page(channels, *, operator: str, csrf: str, problem: str = "") -> str:
    """Channel accounts that need reauthorization (their stored token was refused)."""
    return render("channels.html", title="Channels needing reauthorization", channels=channels, operator=operator, csrf=csrf,
                  problem=problem)  # fmt: skip
