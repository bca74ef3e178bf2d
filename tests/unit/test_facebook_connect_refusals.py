"""The connect flow's answer for each failed Graph call (spokes/facebook/connect.refusal),
on Graph error bodies as Facebook sends them, classified by the spoke's one
classification; and the Login dialog URL it hands the admin's browser."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from base.settings import Settings
from hubs.tenant.proof import APP_MISCONFIGURED, INVALID_CODE, LOGIN_EXPIRED, MISSING_PERMISSION, RATE_LIMITED, UNAVAILABLE
from infra.spoke import PermanentError, RetryableError
from spokes.facebook.client import FacebookLogin, as_exception
from spokes.facebook.connect import refusal
from spokes.facebook.translate import classify_graph_error


def graph(status: int, code: int, message: str, subcode: int | None = None, headers=None):
    error = {"message": message, "type": "OAuthException", "code": code, "fbtrace_id": "AbCdEf123"}
    if subcode is not None:
        error["error_subcode"] = subcode
    return as_exception(classify_graph_error(status, {"error": error}, headers or {}))


@pytest.mark.parametrize(
    "failure, on_code_exchange, rule",
    [
        (graph(400, 100, "Invalid verification code format.", 36007), True, INVALID_CODE),
        (graph(400, 100, "This authorization code has been used.", 36009), True, INVALID_CODE),
        (PermanentError("Graph API HTTP 400, error 190/463: Session has expired", code="login_expired"), False, LOGIN_EXPIRED),
        (graph(403, 200, "(#200) Requires pages_show_list permission to manage the object"), False, MISSING_PERMISSION),
        (graph(403, 10, "(#10) Application does not have permission for this action"), False, MISSING_PERMISSION),
        (graph(429, 4, "(#4) Application request limit reached", headers={"Retry-After": "7"}), False, RATE_LIMITED),
        (graph(400, 613, "(#613) Calls to this api have exceeded the rate limit."), False, RATE_LIMITED),
        (graph(500, 2, "An unexpected error has occurred. Please retry your request later."), False, UNAVAILABLE),
        (RetryableError("breaker open", code="breaker_open"), False, UNAVAILABLE),
        (graph(400, 101, "Error validating application. Invalid application ID."), True, APP_MISCONFIGURED),
    ],
)
def test_each_failed_graph_call_is_answered_by_its_rule_with_graphs_message(failure, on_code_exchange, rule):
    refused = refusal(failure, code=on_code_exchange)

    assert refused.rule == rule
    assert failure.reason.split(":", 1)[0] in refused.message  # Graph's own words travel to the admin


def test_a_rate_limit_says_how_long_to_wait():
    refused = refusal(graph(429, 4, "(#4) Application request limit reached", headers={"Retry-After": "7"}))

    assert refused.retry_after == 7


def test_the_login_dialog_asks_for_what_the_flow_needs_with_the_state_and_redirect_uri():
    settings = Settings(facebook_app_id="42", facebook_login_url="https://www.facebook.com/")
    login = FacebookLogin(httpx.AsyncClient(), settings)

    url = login.dialog_url("https://app.example.com/cb?x=1", "sealed.v1.k.abc")

    parts = urlsplit(url)
    query = parse_qs(parts.query)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == f"https://www.facebook.com/{login.api_version}/dialog/oauth"
    assert query == {
        "client_id": ["42"],
        "redirect_uri": ["https://app.example.com/cb?x=1"],
        "state": ["sealed.v1.k.abc"],
        "response_type": ["code"],
        "scope": ["pages_show_list,pages_messaging,pages_manage_metadata"],
    }
