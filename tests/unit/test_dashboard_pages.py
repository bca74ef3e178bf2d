"""The dashboard's pages render every value as text: each page is rendered from
its template with hostile values in every field it shows, and none comes out
as markup, as an attribute, or as a link that leaves the dashboard."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from sagas.dashboard import pages
from sagas.dashboard.deadletters import DeadLetterView
from sagas.dashboard.rules import SagaFilter, StatsWindow, TypeStats, trace_link

SCRIPT = "<script>alert(1)</script>"
ATTRIBUTE = '"onmouseover=alert(1) x="'
HOSTILE = SCRIPT + ATTRIBUTE
LINK = "javascript:alert(1)"
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def hostile_pages() -> dict[str, str]:
    """Every page, each field it shows holding markup (a saga id a `javascript:` URL)."""
    saga = {
        "saga_id": LINK,
        "saga_type": HOSTILE,
        "tenant_id": HOSTILE,
        "state": HOSTILE,
        "current_step": HOSTILE,
        "correlation_id": HOSTILE,
        "started_at": NOW,
        "updated_at": NOW,
        "version": 3,
        "error": HOSTILE,
    }
    event = {"version": 1, "event_type": HOSTILE, "step": HOSTILE, "summary": HOSTILE, "occurred_at": NOW, "actor": HOSTILE}
    routing = dict.fromkeys(("message_id", "routing_rule", "routed_spoke", "routed_app_id", "routing_reason", "facts"), HOSTILE)
    letter = DeadLetterView(HOSTILE, 0, 7, HOSTILE, HOSTILE, HOSTILE, HOSTILE, NOW, HOSTILE)
    f = SagaFilter(state="", saga_type=HOSTILE, tenant_id=HOSTILE, find=HOSTILE, page=2)
    who = {"operator": HOSTILE, "csrf": HOSTILE}
    return {
        "login": pages.login_page(HOSTILE, csrf=HOSTILE, notice=HOSTILE),
        "message": pages.message_page(HOSTILE, HOSTILE, **who),
        "list": pages.list_page([saga], 120, {"failed": 1}, f, message=HOSTILE, **who),
        "list (nothing found)": pages.list_page([], 0, {}, f, message=HOSTILE, **who),
        "saga": pages.saga_page(saga, [event], routing, message=HOSTILE, reset_steps=[HOSTILE], **who),
        "timeline": pages.timeline_fragment([event]),
        "stats": pages.stats_page(
            [TypeStats(HOSTILE, {"failed": 2}, [{"state": HOSTILE, "n": 2, "p50_s": 1.5, "p95_s": 90.0}], [(HOSTILE, 2)])],
            StatsWindow(3600),
            **who,
        ),
        "dead letters": pages.dead_letters_page([letter], message=HOSTILE, problem=HOSTILE, **who),
        "channels": pages.channels_page(
            [dict(tenant_id=HOSTILE, channel=HOSTILE, account_id=HOSTILE, reauthorization_reason=HOSTILE, updated_at=NOW)],
            problem=HOSTILE,
            **who,
        ),
    }


def check_neutralised(name: str, html: str) -> None:
    assert SCRIPT not in html and "<script>alert" not in html, name
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html, name
    assert ATTRIBUTE not in html and " onmouseover=" not in html, name
    for url in re.findall(r'(?:href|action|src)="([^"]*)"', html):
        assert url.startswith("/"), (name, url)  # every link stays on the dashboard's own paths
    assert not re.search(r'(?:href|action)="[^"]*javascript:', html), name


@pytest.mark.parametrize("name", sorted(hostile_pages()))
def test_every_page_renders_hostile_values_as_text(name):
    check_neutralised(name, hostile_pages()[name])


def test_a_saga_id_in_a_link_stays_one_path_segment():
    html = hostile_pages()["saga"]
    assert 'action="/sagas/javascript%3Aalert%281%29/actions"' in html
    assert 'href="/sagas/javascript%3Aalert%281%29"' in hostile_pages()["list"]


def test_the_check_fails_on_pages_rendered_without_autoescaping(monkeypatch):
    """The fault the templates exist to prevent: the same pages from the same
    templates with autoescaping off must fail the check above."""
    monkeypatch.setattr(pages, "ENV", pages.ENV.overlay(autoescape=False))
    for name, html in hostile_pages().items():
        with pytest.raises(AssertionError):
            check_neutralised(name, html)


def test_no_template_opts_out_of_escaping():
    for template in pages.TEMPLATES.glob("*.html"):
        text = template.read_text()
        for opt_out in ("|safe", "| safe", "autoescape false", "Markup"):
            assert opt_out not in text, (template.name, opt_out)


def test_pages_are_rendered_only_from_templates():
    source = (pages.TEMPLATES.parent / "pages.py").read_text() + (pages.TEMPLATES.parent / "app.py").read_text()
    assert not re.search(r"""f["'][^"'\n]*<[a-z/]""", source), "an f-string builds HTML"
    assert "def e(" not in source and "html import escape" not in source


def test_a_search_that_finds_nothing_says_which_id_was_looked_for_and_that_matches_are_exact():
    html = pages.list_page([], 0, {}, SagaFilter(find="m_42"), operator="op", csrf="c" * 40)
    assert "no saga has the id <code>m_42</code> (exact matches only)" in html
    assert 'name="q" id="f-find" value="m_42"' in html


def test_the_statistics_page_shows_each_types_counts_durations_and_reasons_and_links_to_the_list():
    stats = TypeStats(
        "inbound_message",
        {"completed": 7, "compensated": 2},
        [{"state": "completed", "n": 7, "p50_s": 0.25, "p95_s": 12.34}],
        [("reserve_funds: wallet <uuid> does not exist", 2)],
    )
    html = pages.stats_page([stats], StatsWindow(7200), operator="op", csrf="c" * 40)
    assert 'data-stat="completed">7<' in html and 'data-stat="compensated">2<' in html and "9 saga(s)" in html
    assert "<td>250 ms</td><td>12.3 s</td>" in html
    assert "reserve_funds: wallet &lt;uuid&gt; does not exist" in html
    assert 'href="/?type=inbound_message&amp;state=compensated&amp;max_age=2h"' in html
    assert 'name="window" size="5" value="2h"' in html
    empty = pages.stats_page([], StatsWindow(), operator="op", csrf="c" * 40)
    assert "No saga started in the window." in empty and 'value="1d"' in empty


def test_the_saga_page_offers_a_reset_with_a_step_picker_and_a_required_reason_only_when_there_are_steps():
    saga = {
        "saga_id": "3f2b8c1e-0000-4000-8000-00000000000a", "saga_type": "tenant_onboarding", "tenant_id": "acme",
        "state": "waiting", "current_step": "open_wallet", "correlation_id": "c", "started_at": NOW, "updated_at": NOW,
        "version": 4, "error": "",
    }  # fmt: skip
    html = pages.saga_page(saga, [], None, operator="op", csrf="c" * 40, reset_steps=("create_tenant", "open_wallet"))
    form = re.search(r'<form[^>]*id="action-reset">.*?</form>', html, re.S)[0]
    assert 'name="action" value="reset"' in form and 'name="csrf_token" value="' + "c" * 40 + '"' in form
    assert '<option value="create_tenant">create_tenant</option>' in form
    assert '<option value="open_wallet" selected>open_wallet</option>' in form
    assert 'name="reason" required minlength="3"' in form
    assert 'id="action-reset"' not in pages.saga_page(saga, [], None, operator="op", csrf="c" * 40)


def test_the_saga_page_shows_its_trace_id_linked_to_the_trace_viewer_when_one_is_configured():
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    saga = {
        "saga_id": "3f2b8c1e-0000-4000-8000-00000000000b", "saga_type": "inbound_message", "tenant_id": "acme",
        "state": "completed", "current_step": "", "correlation_id": "c", "started_at": NOW, "updated_at": NOW,
        "version": 9, "error": "", "trace_id": trace_id,
    }  # fmt: skip
    url = trace_link("http://jaeger.example:16686/trace/{trace_id}", trace_id)
    linked = pages.saga_page(saga, [], None, operator="op", csrf="c" * 40, trace_url=url)
    link = f'<a href="http://jaeger.example:16686/trace/{trace_id}" rel="noopener noreferrer" target="_blank">'
    assert f"{link}<code>{trace_id}</code></a>" in linked
    plain = pages.saga_page(saga, [], None, operator="op", csrf="c" * 40, trace_url=trace_link("", trace_id))
    assert f'<dd id="saga-trace"><code>{trace_id}</code></dd>' in plain
    untraced = pages.saga_page({**saga, "trace_id": ""}, [], None, operator="op", csrf="c" * 40)
    assert "none recorded (tracing off)" in untraced
    # Only a well-formed trace id is ever put into a link.
    assert trace_link("http://x/{trace_id}", "javascript:alert(1)") == trace_link("http://x/{trace_id}", "") == ""


def test_the_channels_page_names_each_channel_that_needs_reauthorization_with_the_systems_answer():
    row = dict(
        tenant_id="acme", channel="facebook", account_id="104857600901", updated_at=NOW,
        reauthorization_reason="Graph API HTTP 400, error 190/463: Session has expired",
    )  # fmt: skip

    html = pages.channels_page([row], operator="olga", csrf="c")
    empty = pages.channels_page([], operator="olga", csrf="c")

    assert 'class="needs-reauthorization"' in html and "acme" in html and "104857600901" in html
    assert "error 190/463" in html and 'href="/channels"' in html
    assert "every connected channel" in empty
