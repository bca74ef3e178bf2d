"""HTML of the dashboard's pages, as plain string templates: every value goes
through `e()` (HTML escaping) and every summary through PII masking. No I/O."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from html import escape

from sagas.dashboard.rules import CSRF_FIELD, STATES, SagaFilter, duration_text, mask_summary


def e(value: object) -> str:
    return escape("" if value is None else str(value), quote=True)


def when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") + " UTC" if value else ""


def layout(title: str, body: str, *, operator: str = "", csrf: str = "", live: str = "") -> str:
    nav = (
        f'<nav><a href="/">Sagas</a> <a href="/dead-letters">Dead letters</a>'
        f'<span class="who">operator <b>{e(operator)}</b> '
        f'<form method="post" action="/logout" class="inline"><input type="hidden" name="{CSRF_FIELD}" value="{e(csrf)}">'
        f"<button>Log out</button></form></span></nav>"
        if operator
        else ""
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{e(title)} · Poseidon operators</title>"
        '<link rel="stylesheet" href="/static/dashboard.css"></head>'
        f'<body data-live="{e(live)}"><header><h1>Poseidon · {e(title)}</h1>{nav}</header><main>{body}</main>'
        '<script src="/static/dashboard.js" defer></script></body></html>'
    )


def login_page(error: str = "", csrf: str = "") -> str:
    err = f'<p class="error" role="alert">{e(error)}</p>' if error else ""
    body = f"""{err}
<section class="card"><h2>Log in</h2>
<form method="post" action="/login" id="login-form">
<input type="hidden" name="{CSRF_FIELD}" value="{e(csrf)}">
<label>Login <input name="login" autocomplete="username"></label>
<label>Password <input name="password" type="password" autocomplete="current-password"></label>
<label>TOTP code (when enrolled) <input name="totp_code" inputmode="numeric" autocomplete="one-time-code"></label>
<p>— or paste an access token —</p>
<label>Bearer token <textarea name="token" rows="3"></textarea></label>
<button type="submit">Log in</button></form>
<p class="hint">Operators: a platform-scope token, or admin/owner of the tenant <code>platform</code>.</p></section>"""
    return layout("Log in", body)


def counts_bar(counts: Mapping[str, int], f: SagaFilter) -> str:
    items = []
    for state in STATES:
        cls = "count active" if f.state == state else "count"
        items.append(
            f'<a class="{cls} state-{state}" href="/?{e(f.query_string(state=state, page=1))}">'
            f'{state.replace("_", " ")} <b data-count="{state}">{counts.get(state, 0)}</b></a>'
        )
    return '<div class="counts" id="counts">' + "".join(items) + "</div>"


def _select(name: str, value: str, options: Iterable[str]) -> str:
    opts = "".join(f'<option value="{e(o)}"{" selected" if o == value else ""}>{e(o or "any")}</option>' for o in ("", *options))
    return f'<select name="{name}" id="f-{name}">{opts}</select>'


def list_page(rows, total: int, counts: Mapping[str, int], f: SagaFilter, *, operator: str, csrf: str, message: str = "") -> str:
    flash = f'<p class="flash" role="status">{e(message)}</p>' if message else ""
    filters = f"""<form method="get" action="/" class="filters" id="filters">
<label>State {_select("state", f.state, STATES)}</label>
<label>Type <input name="type" id="f-type" value="{e(f.saga_type)}" placeholder="inbound_message"></label>
<label>Tenant <input name="tenant" id="f-tenant" value="{e(f.tenant_id)}"></label>
<label>Older than <input name="min_age" size="4" value="{e(duration_text(f.min_age_s))}" placeholder="15m"></label>
<label>Newer than <input name="max_age" size="4" value="{e(duration_text(f.max_age_s))}" placeholder="1d"></label>
<button type="submit">Filter</button> <a href="/">clear</a></form>"""
    body_rows = "".join(
        f'<tr data-saga="{e(r["saga_id"])}"><td><a href="/sagas/{e(r["saga_id"])}">{e(r["saga_id"])}</a></td>'
        f"<td>{e(r['saga_type'])}</td><td>{e(r['tenant_id'])}</td>"
        f'<td><span class="state state-{e(r["state"])}" data-field="state">{e(r["state"])}</span></td>'
        f'<td data-field="step">{e(r["current_step"])}</td><td>{when(r["started_at"])}</td>'
        f'<td data-field="updated">{when(r["updated_at"])}</td></tr>'
        for r in rows
    )
    pages = max(1, -(-total // f.page_size))
    prev = f'<a href="/?{e(f.query_string(page=f.page - 1))}">← previous</a>' if f.page > 1 else ""
    nxt = f'<a href="/?{e(f.query_string(page=f.page + 1))}">next →</a>' if f.page < pages else ""
    batch = f"""<form method="post" action="/sagas/batch?{e(f.query_string())}" class="batch" id="batch-form">
<input type="hidden" name="{CSRF_FIELD}" value="{e(csrf)}">
<b>Batch on the {total} filtered saga(s):</b>
<select name="action"><option value="retry">retry current step</option><option value="compensate">compensate</option></select>
<input name="reason" required minlength="3" placeholder="reason (required)">
<button type="submit">Apply to filtered set</button></form>"""
    table = (
        '<table class="sagas" id="saga-table"><thead><tr><th>saga</th><th>type</th><th>tenant</th><th>state</th>'
        "<th>step</th><th>started</th><th>updated</th></tr></thead>"
        f"<tbody>{body_rows or '<tr><td colspan=7>no sagas match</td></tr>'}"
        f'</tbody></table><p class="pager">{prev} page {f.page} of {pages} ({total} sagas) {nxt}</p>'
    )
    return layout("Sagas", flash + counts_bar(counts, f) + filters + table + batch, operator=operator, csrf=csrf, live="list")


def timeline_fragment(events) -> str:
    items = "".join(
        f'<li class="ev ev-{e(ev["event_type"])}" data-version="{ev["version"]}">'
        f'<time>{when(ev["occurred_at"])}</time> <b class="etype">{e(ev["event_type"])}</b>'
        f"{' · step <code>' + e(ev['step']) + '</code>' if ev['step'] else ''}"
        f"{' · by <span class=actor>' + e(ev['actor']) + '</span>' if ev['actor'] else ''}"
        f'<div class="summary">{e(mask_summary(ev["summary"] or ""))}</div></li>'
        for ev in events
    )
    return f'<ol class="timeline" id="timeline">{items}</ol>'


def saga_page(saga, events, routing, *, operator: str, csrf: str, message: str = "") -> str:
    flash = f'<p class="flash" role="status" id="flash">{e(message)}</p>' if message else ""
    error = f'<p class="error" id="saga-error"><b>Error:</b> {e(mask_summary(saga["error"] or ""))}</p>' if saga["error"] else ""
    if routing is not None:
        route = (
            f'<dl class="routing"><dt>message</dt><dd>{e(routing["message_id"])}</dd>'
            f"<dt>rule</dt><dd>{e(routing['routing_rule'])}</dd>"
            f"<dt>to</dt><dd>{e(routing['routed_spoke'])} {e(routing['routed_app_id'])}</dd>"
            f"<dt>reason</dt><dd>{e(routing['routing_reason'])}</dd>"
            f"<dt>facts</dt><dd><code>{e(mask_summary(routing['facts'] or ''))}</code></dd></dl>"
        )
    else:
        route = '<p class="hint">No routing decision recorded for this correlation id (not started by an inbound message).</p>'
    sid = e(saga["saga_id"])

    def action(name: str, label: str, with_step: bool) -> str:
        step = (
            f'<input type="hidden" name="step" value="{e(saga["current_step"])}">'
            f"<span>step <code>{e(saga['current_step'])}</code></span>"
            if with_step
            else ""
        )
        return (
            f'<form method="post" action="/sagas/{sid}/actions" class="action" id="action-{name}">'
            f'<input type="hidden" name="{CSRF_FIELD}" value="{e(csrf)}"><input type="hidden" name="action" value="{name}">{step}'
            '<input name="reason" required minlength="3" placeholder="reason (required)">'
            f'<button type="submit">{label}</button></form>'
        )

    body = f"""{flash}
<section class="card" id="saga" data-saga="{sid}" data-version="{saga["version"]}">
<dl class="facts"><dt>saga</dt><dd>{sid}</dd><dt>type</dt><dd>{e(saga["saga_type"])}</dd>
<dt>tenant</dt><dd>{e(saga["tenant_id"])}</dd>
<dt>state</dt><dd><span class="state state-{e(saga["state"])}" id="saga-state">{e(saga["state"])}</span></dd>
<dt>current step</dt><dd id="saga-step">{e(saga["current_step"])}</dd>
<dt>correlation id</dt><dd><code>{e(saga["correlation_id"])}</code></dd>
<dt>started</dt><dd>{when(saga["started_at"])}</dd>
<dt>updated</dt><dd id="saga-updated">{when(saga["updated_at"])}</dd></dl>{error}</section>
<section class="card"><h2>Routing decision</h2>{route}</section>
<section class="card"><h2>Actions</h2>{action("retry", "Retry step", True)}
{action("compensate", "Compensate from here", False)}{action("abort", "Abort saga", False)}</section>
<section class="card"><h2>Timeline</h2>{timeline_fragment(events)}</section>"""
    return layout(f"Saga {saga['saga_id']}", body, operator=operator, csrf=csrf, live="saga")


def dead_letters_page(letters, *, operator: str, csrf: str, message: str = "", problem: str = "") -> str:
    flash = f'<p class="flash" role="status">{e(message)}</p>' if message else ""
    warn = f'<p class="error">{e(problem)}</p>' if problem else ""
    rows = "".join(
        f"<tr><td>{e(d.topic)}<br><small>{d.partition}@{d.offset}</small></td><td>{e(d.source_topic)}</td><td>{e(d.error_type)}</td>"
        f'<td>{e(d.reason)}</td><td>{e(d.processor)}</td><td>{when(d.failed_at)}</td><td class="summary">{e(d.summary)}</td>'
        '<td><form method="post" action="/dead-letters/redrive" class="redrive">'
        f'<input type="hidden" name="{CSRF_FIELD}" value="{e(csrf)}">'
        f'<input type="hidden" name="topic" value="{e(d.topic)}"><input type="hidden" name="partition" value="{d.partition}">'
        f'<input type="hidden" name="offset" value="{d.offset}"><input name="reason" required minlength="3" placeholder="reason">'
        f"<button>Re-drive</button></form></td></tr>"
        for d in letters
    )
    table = (
        '<table class="dlq" id="dlq-table"><thead><tr><th>dead-letter topic</th><th>source</th><th>error type</th><th>reason</th>'
        f"<th>processor</th><th>failed</th><th>payload (masked)</th><th></th></tr></thead><tbody>"
        f"{rows or '<tr><td colspan=8>no dead letters</td></tr>'}</tbody></table>"
    )
    return layout("Dead letters", flash + warn + table, operator=operator, csrf=csrf)
