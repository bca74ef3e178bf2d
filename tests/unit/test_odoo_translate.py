"""The Odoo translation, pure: res.partner domains and values, and what every Odoo answer
means — on XML-RPC bodies and JSON-2 error bodies shaped as Odoo 19 writes them."""

from __future__ import annotations

import json
import xmlrpc.client

import pytest

from spokes.odoo import translate
from spokes.odoo.translate import Failure, InvalidCustomer


def fault_body(code: int | str, text: str) -> bytes:
    # As odoo.addons.base.controllers.rpc.dumps writes a fault.
    inner = xmlrpc.client.Marshaller(allow_none=False).dumps(xmlrpc.client.Fault(code, text))
    return f'<?xml version="1.0"?>\n<methodResponse>\n{inner}\n</methodResponse>\n'.encode()


def result_body(value) -> bytes:
    return xmlrpc.client.dumps((value,), methodresponse=True).encode()


def json_error(name: str, message: str, arguments=None) -> bytes:
    return json.dumps(
        {"name": name, "message": message, "arguments": arguments or [message], "context": {}, "debug": "Traceback ..."}
    ).encode()


TRACEBACK_VALUE_ERROR = """Traceback (most recent call last):
  File "/opt/odoo/odoo/addons/base/controllers/rpc.py", line 151, in xmlrpc_2
    response = self._xmlrpc(service)
               ^^^^^^^^^^^^^^^^^^^^^
  File "/opt/odoo/odoo/orm/domains.py", line 892, in _to_model
    raise ValueError(f"Invalid field {model._name}.{self.field_expr} in condition {self!r}")
ValueError: Invalid field res.partner.x_facebook_psid in condition ('x_facebook_psid', '=', '2584')
"""

TRACEBACK_DB_DOWN = """Traceback (most recent call last):
  File "/opt/odoo/odoo/sql_db.py", line 780, in borrow
    result = psycopg2.connect(
             ^^^^^^^^^^^^^^^^^
psycopg2.OperationalError: connection to server at "db" (10.0.0.5), port 5432 failed: server closed the connection unexpectedly
\tThis probably means the server terminated abnormally
\tbefore or while processing the request.
"""

TRACEBACK_NO_DATABASE = """Traceback (most recent call last):
  File "/opt/odoo/odoo/modules/registry.py", line 120, in new
    with registry.cursor() as cr:
psycopg2.OperationalError: connection to server on socket "/var/run/postgresql/.s.PGSQL.5432" failed: \
FATAL:  database "acme-prod" does not exist
"""


# --- res.partner ---------------------------------------------------------------------------


def test_finds_a_facebook_contact_by_its_page_scoped_id():
    assert translate.partner_domain("facebook", "2584019") == [["x_facebook_psid", "=", "2584019"]]
    assert translate.partner_fields("facebook") == ["name", "phone", "x_facebook_psid"]


def test_refuses_a_channel_without_a_partner_field_and_an_empty_contact_id():
    with pytest.raises(InvalidCustomer):
        translate.partner_domain("telegram", "1")
    with pytest.raises(InvalidCustomer):
        translate.partner_domain("facebook", "")


def test_a_new_partner_carries_name_contact_id_and_phone():
    values = translate.new_partner_values("facebook", "2584019", " Ana Silva ", " +351 912 345 678 ")
    assert values == {"name": "Ana Silva", "x_facebook_psid": "2584019", "phone": "+351 912 345 678"}


def test_a_new_partner_without_a_name_is_named_after_its_channel_id_and_has_no_phone_key():
    assert translate.new_partner_values("facebook", "2584019", "", None) == {
        "name": "Facebook contact 2584019",
        "x_facebook_psid": "2584019",
    }


@pytest.mark.parametrize(
    ("current", "given", "change"),
    [
        (False, "+32470123456", {"phone": "+32470123456"}),
        ("+32 470 12 34 56", "+32470123456", {}),
        ("+32 470-12-34-56", "+32 470 12 34 56", {}),
        ("+32470123456", "+32470999999", {"phone": "+32470999999"}),
        ("+32470123456", None, {}),
        ("+32470123456", "  ", {}),
    ],
)
def test_writes_the_phone_only_when_given_and_different(current, given, change):
    assert translate.phone_change({"id": 7, "phone": current}, given) == change


# --- XML-RPC -------------------------------------------------------------------------------


def test_an_xmlrpc_request_is_a_method_call_odoo_can_read():
    body = translate.xmlrpc_request("authenticate", ("acme", "bot@acme.example", "key", {}))
    assert xmlrpc.client.loads(body) == (("acme", "bot@acme.example", "key", {}), "authenticate")


def test_an_xmlrpc_request_refuses_none_as_odoo_does():
    with pytest.raises(TypeError):
        translate.xmlrpc_request("execute_kw", ("acme", 2, "key", "res.partner", "search", [[]], {"limit": None}))


def test_an_xmlrpc_result_is_its_single_value():
    body = result_body([{"id": 7, "name": "Ana", "phone": False, "x_facebook_psid": "2584019"}])
    assert translate.xmlrpc_reply("res.partner.search_read", 200, body).value[0]["id"] == 7
    assert translate.xmlrpc_reply("common.authenticate", 200, result_body(False)) == translate.Reply(value=False)


@pytest.mark.parametrize(
    ("code", "text", "kind", "error_code"),
    [
        (3, "Access Denied", "reauthorize", "odoo_access_denied"),
        (4, "You are not allowed to create 'Contact' (res.partner) records.", "permanent", "odoo_access_error"),
        (2, "Contacts require a name", "permanent", "odoo_user_error"),
        (
            2,
            "Record does not exist or has been deleted.\n(Records: res.partner(99,), User: 2)",
            "permanent",
            "odoo_missing",
        ),
        (1, TRACEBACK_VALUE_ERROR, "permanent", "odoo_bad_request"),
        (1, TRACEBACK_DB_DOWN, "retryable", "odoo_server_error"),
        (1, TRACEBACK_NO_DATABASE, "permanent", "odoo_unknown_database"),
        (1, "something nobody expected", "retryable", "odoo_server_error"),
    ],
)
def test_xmlrpc_faults_map_to_what_they_mean(code, text, kind, error_code):
    failure = translate.xmlrpc_reply("res.partner.create", 200, fault_body(code, text)).failure
    assert (failure.kind, failure.code) == (kind, error_code)


def test_legacy_string_fault_codes_are_understood_too():
    assert translate.fault_failure("c", "AccessDenied", "Access Denied").kind == "reauthorize"
    assert translate.fault_failure("c", "warning -- MissingError\n\nRecord does not exist", "").code == "odoo_missing"
    assert translate.fault_failure("c", "warning -- ValidationError\n\nbad", "").code == "odoo_user_error"


def test_a_failure_reason_names_the_call_and_class_never_the_message():
    failure = translate.xmlrpc_reply("res.partner.write", 200, fault_body(1, TRACEBACK_VALUE_ERROR)).failure
    assert "res.partner.write" in failure.reason and "ValueError" in failure.reason
    assert "2584" not in failure.reason
    failure = translate.json2_reply("res.partner.create", 422, json_error("odoo.exceptions.ValidationError", "+351 912 is bad"))
    assert "+351" not in failure.failure.reason


@pytest.mark.parametrize(
    ("status", "kind", "error_code", "retry_after"),
    [
        (500, "retryable", "odoo_server_error", None),
        (502, "retryable", "odoo_unavailable", None),
        (503, "retryable", "odoo_unavailable", 7.0),
        (504, "retryable", "odoo_timeout", None),
        (429, "retryable", "odoo_rate_limited", 7.0),
        (404, "permanent", "odoo_not_found", None),
        (401, "reauthorize", "odoo_access_denied", None),
        (413, "permanent", "odoo_http_413", None),
    ],
)
def test_an_xmlrpc_answer_other_than_200_comes_from_a_proxy_or_a_crash(status, kind, error_code, retry_after):
    html = b"<html><body><h1>Bad Gateway</h1></body></html>"
    failure = translate.xmlrpc_reply("res.partner.search_read", status, html, "7" if retry_after else None).failure
    assert (failure.kind, failure.code, failure.retry_after) == (kind, error_code, retry_after)


def test_a_200_page_that_is_not_xmlrpc_is_worth_retrying():
    failure = translate.xmlrpc_reply("common.version", 200, b"<html><body>Maintenance</body></html>").failure
    assert (failure.kind, failure.code) == ("retryable", "odoo_bad_response")


def test_reads_the_exception_line_of_a_traceback():
    assert translate.traceback_exception(TRACEBACK_VALUE_ERROR)[0] == "ValueError"
    name, message = translate.traceback_exception(TRACEBACK_DB_DOWN)
    assert name == "psycopg2.OperationalError" and "terminated abnormally" in message


# --- JSON-2 --------------------------------------------------------------------------------


def test_a_json2_result_is_the_json_body():
    assert translate.json2_reply("res.partner.create", 200, b"[42]").value == [42]
    assert translate.json2_reply("res.partner.write", 200, b"true").value is True


# The body of Odoo's documented 401 (External JSON-2 API, "Response").
DOCUMENTED_401 = json.dumps(
    {
        "name": "werkzeug.exceptions.Unauthorized",
        "message": "Invalid apikey",
        "arguments": ["Invalid apikey", 401],
        "context": {},
        "debug": "Traceback (most recent call last):\n  ...\nwerkzeug.exceptions.Unauthorized: 401 Unauthorized: Invalid apikey",
    }
).encode()


@pytest.mark.parametrize(
    ("status", "body", "kind", "error_code"),
    [
        (401, DOCUMENTED_401, "reauthorize", "odoo_access_denied"),
        (
            403,
            json_error("odoo.exceptions.AccessDenied", "Session user does not match the used apikey."),
            "reauthorize",
            "odoo_access_denied",
        ),
        (
            403,
            json_error("odoo.exceptions.AccessError", "You are not allowed to modify 'Contact'"),
            "permanent",
            "odoo_access_error",
        ),
        (422, json_error("odoo.exceptions.ValidationError", "Contacts require a name"), "permanent", "odoo_user_error"),
        (422, json_error("odoo.exceptions.UserError", "Nope"), "permanent", "odoo_user_error"),
        (
            404,
            json_error("odoo.exceptions.MissingError", "Record does not exist or has been deleted."),
            "permanent",
            "odoo_missing",
        ),
        (404, json_error("werkzeug.exceptions.NotFound", "the model 'res.partnr' does not exist"), "permanent", "odoo_not_found"),
        (
            422,
            json_error("werkzeug.exceptions.UnprocessableEntity", "got an unexpected keyword argument 'valz'"),
            "permanent",
            "odoo_bad_request",
        ),
        (400, json_error("werkzeug.exceptions.BadRequest", "could not parse the body as json"), "permanent", "odoo_bad_request"),
        (409, json_error("odoo.exceptions.LockError", "records are being modified"), "retryable", "odoo_busy"),
        (
            500,
            json_error("builtins.ValueError", "Invalid field 'x_facebook_psid' on model 'res.partner'"),
            "permanent",
            "odoo_bad_request",
        ),
        (
            500,
            json_error("psycopg2.OperationalError", "server closed the connection unexpectedly"),
            "retryable",
            "odoo_server_error",
        ),
        (500, json_error("odoo.addons.acme.models.AcmeError", "custom"), "retryable", "odoo_server_error"),
        (422, json_error("odoo.addons.acme.models.AcmeError", "custom"), "permanent", "odoo_http_422"),
        (404, b"<!doctype html>\n<title>404 Not Found</title>", "permanent", "odoo_not_found"),
        (503, b"<html>503 Service Temporarily Unavailable</html>", "retryable", "odoo_unavailable"),
    ],
)
def test_json2_errors_map_to_what_they_mean(status, body, kind, error_code):
    failure = translate.json2_reply("res.partner.write", status, body).failure
    assert (failure.kind, failure.code) == (kind, error_code)


def test_a_json2_retry_after_is_kept_for_retryable_errors_only():
    busy = translate.json2_reply("c", 409, json_error("odoo.exceptions.LockError", "locked"), "3").failure
    assert busy.retry_after == 3.0
    assert translate.json2_reply("c", 429, b"Too Many Requests", "2").failure == Failure(
        "retryable", "odoo_rate_limited", "c: HTTP 429: too many requests", 2.0
    )
    assert translate.json2_reply("c", 422, json_error("odoo.exceptions.UserError", "x"), "3").failure.retry_after is None


def test_retry_after_as_an_http_date_is_left_to_the_backoff():
    assert translate.parse_retry_after("Wed, 21 Oct 2026 07:28:00 GMT") is None
    assert translate.parse_retry_after("120") == 120.0


@pytest.mark.parametrize(
    "text, phone",
    [
        ("call me on +33 6 12 34 56 78 please", "+33612345678"),
        ("my number: 06.12.34.56.78", "0612345678"),
        ("(415) 555-0132", "4155550132"),
        ("order 1234 shipped", None),
        ("", None),
        ("ref ABC12345678XYZ", None),
    ],
)
def test_a_phone_number_typed_in_a_message_is_found_and_normalised(text, phone):
    from spokes.odoo.translate import phone_in_text

    assert phone_in_text(text) == phone
