"""The dashboard's pure rules: filters → SQL, PII masking, session secrets and CSRF,
operator role, where it may listen. (Its pages: test_dashboard_pages.py.)"""

from __future__ import annotations

import pytest

from sagas.dashboard.pages import list_page, timeline_fragment
from sagas.dashboard.rules import (
    CSRF_COOKIE,
    SESSION_COOKIE,
    BadFilter,
    InsecureListen,
    SagaFilter,
    SessionRefused,
    StatsWindow,
    check_reason,
    check_served_securely,
    check_step,
    csrf_ok,
    csrf_token_for,
    is_operator,
    mask_summary,
    new_csrf_token,
    new_session_id,
    open_token,
    reset_choices,
    seal_token,
    seconds_text,
    session_key,
    type_stats,
)


def test_an_empty_filter_selects_every_saga_without_parameters():
    assert SagaFilter.from_query({}).where() == ("", [])


def test_every_filter_value_becomes_a_numbered_parameter_never_sql_text():
    f = SagaFilter.from_query({"state": "failed", "type": "inbound_message", "tenant": "acme", "min_age": "15m", "max_age": "2d"})
    sql, args = f.where()
    assert sql == (
        "WHERE state = $1 AND saga_type = $2 AND tenant_id = $3 AND started_at <= now() - make_interval(secs => $4) "
        "AND started_at >= now() - make_interval(secs => $5)"
    )
    assert args == ["failed", "inbound_message", "acme", 900.0, 172800.0]


def test_counts_ignore_the_state_filter_but_keep_the_others():
    sql, args = SagaFilter.from_query({"state": "failed", "tenant": "acme"}).where(with_state=False)
    assert (sql, args) == ("WHERE tenant_id = $1", ["acme"])


@pytest.mark.parametrize(
    "query, names",
    [
        ({"state": "stuck"}, "state"),
        ({"tenant": "acme'; DROP TABLE sagas; --"}, "tenant"),
        ({"min_age": "ten minutes"}, "min_age"),
        ({"page": "0"}, "page"),
        ({"page_size": "10000"}, "page_size"),
    ],
)
def test_a_bad_filter_is_refused_naming_the_parameter(query, names):
    with pytest.raises(BadFilter, match=names):
        SagaFilter.from_query(query)


def test_find_matches_one_id_exactly_against_correlation_message_and_contact_ids_as_one_parameter():
    sql, args = SagaFilter.from_query({"q": "  mid.$1:AbC'x  ", "tenant": "acme"}).where()
    assert sql == "WHERE tenant_id = $1 AND (correlation_id = $2 OR message_id = $2 OR contact_id = $2)"
    assert args == ["acme", "mid.$1:AbC'x"]


def test_find_compares_a_uuid_with_the_saga_id_too_in_its_canonical_form():
    f = SagaFilter.from_query({"q": "3F2B8C1E-0000-4000-8000-00000000000A", "state": "failed"})
    sql, args = f.where()
    assert sql == ("WHERE state = $1 AND (saga_id = $3::uuid OR correlation_id = $2 OR message_id = $2 OR contact_id = $2)")
    assert args == ["failed", "3F2B8C1E-0000-4000-8000-00000000000A", "3f2b8c1e-0000-4000-8000-00000000000a"]
    assert f.where(with_state=False)[1] == args[1:]  # the counts find the same sagas


def test_find_is_kept_in_links_and_an_empty_box_finds_nothing_in_particular():
    assert SagaFilter.from_query({"q": "m_1"}).query_string(page=2) == "q=m_1&page=2"
    assert SagaFilter.from_query({"q": "   "}).where() == ("", [])


@pytest.mark.parametrize("raw", ["two ids", "x" * 201, "id\x00", "line\nbreak"])
def test_find_refuses_what_is_not_one_id_saying_what_q_must_be(raw):
    with pytest.raises(BadFilter, match="q \\(the id to find\\)"):
        SagaFilter.from_query({"q": raw})


def test_statistics_read_one_window_of_started_sagas_every_query_bounded_and_parameterised():
    queries = StatsWindow.from_query({"window": "2h"}).queries('"p_saga".sagas')
    assert len(queries) == 3
    for sql, args in queries:
        assert 'FROM "p_saga".sagas' in sql and "started_at >= now() - make_interval(secs => $1)" in sql
        assert sql.rstrip().endswith("LIMIT $2") and args[:2] == [7200.0, 1000]
    counts, durations, failures = queries
    assert "GROUP BY saga_type, state" in counts[0]
    assert "percentile_cont(0.5)" in durations[0] and "percentile_cont(0.95)" in durations[0]
    assert durations[1][2] == ["completed", "compensated", "aborted"]
    assert "regexp_replace" in failures[0] and "error <> ''" in failures[0]


@pytest.mark.parametrize("window", ["31d", "0s", "a week", "-1h"])
def test_a_statistics_window_beyond_thirty_days_or_unreadable_is_refused(window):
    with pytest.raises(BadFilter, match="window"):
        StatsWindow.from_query({"window": window})


def test_an_empty_statistics_window_is_the_last_day():
    assert StatsWindow.from_query({"window": ""}).window_s == 86400


def test_statistics_fold_per_type_with_every_state_and_the_top_reasons_masked_and_merged():
    counts = [
        {"saga_type": "inbound_message", "state": "completed", "n": 9},
        {"saga_type": "inbound_message", "state": "compensated", "n": 3},
        {"saga_type": "tenant_onboarding", "state": "waiting", "n": 1},
    ]
    durations = [{"saga_type": "inbound_message", "state": "completed", "n": 9, "p50_s": 0.4, "p95_s": 2.5}]
    failures = [
        {"saga_type": "inbound_message", "reason": "odoo: refused for jane.doe@example.com", "n": 1},
        {"saga_type": "inbound_message", "reason": "odoo: refused for jack.doe@example.com", "n": 1},
        {"saga_type": "inbound_message", "reason": "reserve_funds: wallet <uuid> does not exist", "n": 1},
    ] + [{"saga_type": "inbound_message", "reason": f"step{i}: down", "n": 1} for i in range(6)]
    inbound, onboarding = type_stats(counts, durations, failures, top=3)
    assert inbound.saga_type == "inbound_message" and inbound.total == 12
    assert inbound.counts["completed"] == 9 and inbound.counts["needs_attention"] == 0
    assert inbound.durations == [{"state": "completed", "n": 9, "p50_s": 0.4, "p95_s": 2.5}]
    assert inbound.reasons[0] == ("odoo: refused for j•••@example.com", 2)  # masked, then merged
    assert len(inbound.reasons) == 3 and not any("jane" in r or "jack" in r for r, _ in inbound.reasons)
    assert onboarding.counts["waiting"] == 1 and onboarding.durations == [] and onboarding.reasons == []


def test_durations_read_in_the_unit_that_suits_them():
    assert [seconds_text(s) for s in (None, 0.0123, 4.56, 150, 7200)] == ["", "12 ms", "4.6 s", "2.5 min", "2.0 h"]


def test_pagination_turns_pages_into_limit_and_offset_and_links_keep_the_filters():
    f = SagaFilter.from_query({"state": "failed", "page": "3", "page_size": "20", "min_age": "2h"})
    assert f.limit_offset() == (20, 40)
    assert f.query_string(page=4) == "state=failed&min_age=2h&page=4&page_size=20"


def test_summaries_mask_emails_phones_tokens_secrets_and_message_text():
    raw = (
        "contact jane.doe@example.com phone +49 170 1234567 text='I am Jane, call me' "
        "password=hunter2 Authorization: Bearer abcdefghijklmnop eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"
    )
    masked = mask_summary(raw)
    for secret in ("jane.doe", "1234567", "I am Jane", "hunter2", "abcdefghijklmnop", "eyJhbGci"):
        assert secret not in masked
    assert "j•••@example.com" in masked and "•••67" in masked and "[18 chars]" in masked


def test_summaries_keep_ids_amounts_and_step_names_readable():
    text = "step reserve_funds wallet 3f2a amount 500 reservation r-1"
    assert mask_summary(text) == text


def test_long_summaries_are_cut():
    assert len(mask_summary("x" * 1000)) == 300


def test_csrf_passes_only_when_form_and_cookie_carry_the_same_token():
    token = new_csrf_token()
    assert csrf_ok(token, token)
    assert not csrf_ok(token, new_csrf_token())
    assert not csrf_ok(token, None) and not csrf_ok(None, token) and not csrf_ok("short", "short")


def test_a_csrf_token_is_bound_to_its_session():
    a, b = new_session_id(), new_session_id()
    assert csrf_ok(csrf_token_for(a), csrf_token_for(a))
    assert not csrf_ok(csrf_token_for(b), csrf_token_for(a))
    assert csrf_token_for(a) == csrf_token_for(a) and a not in csrf_token_for(a)


def test_the_session_table_holds_neither_the_cookie_nor_a_token_that_opens_without_it():
    sid, other = new_session_id(), new_session_id()
    sealed = seal_token(sid, "eyJ.the-access-token.sig")
    assert sid.encode() not in session_key(sid) and b"the-access-token" not in sealed
    assert open_token(sid, sealed) == "eyJ.the-access-token.sig"
    with pytest.raises(SessionRefused):
        open_token(other, sealed)
    with pytest.raises(SessionRefused):
        session_key("eyJhbGciOiJFUzI1NiJ9.a-token-pasted-as-a-cookie.sig")


def test_cookies_carry_the_host_prefix():
    assert SESSION_COOKIE.startswith("__Host-") and CSRF_COOKIE.startswith("__Host-")


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"])
def test_the_dashboard_may_serve_plain_http_on_a_loopback_address(host):
    check_served_securely(host, dev_mode=False)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "", "10.0.0.5", "dashboard.example.com"])
def test_plain_http_beyond_loopback_is_refused_unless_in_development_mode(host):
    with pytest.raises(InsecureListen, match="POSEIDON_DEV_MODE"):
        check_served_securely(host, dev_mode=False)
    check_served_securely(host, dev_mode=True)


def test_operators_are_platform_scope_principals_or_admins_of_the_platform_tenant():
    assert is_operator(frozenset({"platform"}), None)
    assert is_operator(frozenset(), "admin") and is_operator(frozenset(), "owner")
    assert not is_operator(frozenset(), "agent")
    assert not is_operator(frozenset(), None)


def test_an_action_needs_a_reason():
    with pytest.raises(BadFilter, match="reason"):
        check_reason("  ")
    assert check_reason("  bot   fixed ") == "bot fixed"


def test_pages_escape_values_and_mask_timeline_summaries():
    from datetime import UTC, datetime

    events = [
        {
            "version": 1,
            "event_type": "StepFailed",
            "step": "<script>",
            "summary": "mail bob@example.org",
            "occurred_at": datetime(2026, 1, 1, tzinfo=UTC),
            "actor": "",
        }
    ]
    html = timeline_fragment(events)
    assert "<script>" not in html and "&lt;script&gt;" in html and "bob@" not in html
    row = {
        "saga_id": "s1",
        "saga_type": "t",
        "tenant_id": "<b>x</b>",
        "state": "failed",
        "current_step": "a",
        "started_at": None,
        "updated_at": None,
    }
    page = list_page([row], 1, {}, SagaFilter(), operator="op", csrf="c" * 40)
    assert "<b>x</b>" not in page and 'data-count="failed"' in page


def test_a_reset_is_offered_for_the_steps_up_to_the_current_one_while_the_saga_runs_its_steps():
    steps = ["create_tenant", "open_wallet", "default_config", "subscribe_default_app"]
    assert reset_choices(steps, "waiting", "default_config") == ("create_tenant", "open_wallet", "default_config")
    assert reset_choices(steps, "waiting", "create_tenant") == ("create_tenant",)
    for state in ("compensating", "needs_attention", "completed", "compensated", "aborted"):
        assert reset_choices(steps, state, "default_config") == ()
    assert reset_choices(steps, "waiting", "") == () and reset_choices([], "waiting", "x") == ()


def test_a_reset_names_one_step():
    assert check_step(" open_wallet ") == "open_wallet"
    for bad in ("", "two steps", "<script>"):
        with pytest.raises(BadFilter, match="step"):
            check_step(bad)
