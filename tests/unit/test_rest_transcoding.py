"""The REST face of the gRPC methods (infra/rest.py), pure: HTTP request → protobuf
request, gRPC refusal → RFC 9457 problem, routes → OpenAPI 3.1."""

from __future__ import annotations

import grpc
import pytest

from infra import rest
from infra.rest import BadRequest, Route, methods
from poseidon import bootstrap
from schemas.protos import app_pb2, config_pb2, tenant_pb2, wallet_pb2

CONFIG = methods(config_pb2, "ConfigService")
TENANT = methods(tenant_pb2, "TenantMembership")
SET_VALUE = Route(
    "PUT", "/v1/config/values/{key}", CONFIG.SetValue, "Set", idempotency_field="request_id", version_field="expected_version"
)
LEDGER = Route(
    "GET", "/v1/tenants/{tenant_id}/wallets/{wallet_id}/ledger", methods(wallet_pb2, "WalletQuery").ListLedger, "Ledger"
)


def build(route, path=None, query=None, body=None, headers=None, caller=""):
    return rest.build_request(route, path or {}, query or {}, body, headers or {}, caller)


def test_path_body_and_headers_fill_the_request_and_the_headers_fill_only_their_fields():
    request = build(
        SET_VALUE,
        {"key": "greeting"},
        body={"scope_kind": "SCOPE_KIND_TENANT", "scope_id": "acme", "value_json": '"hi"'},
        headers={"Idempotency-Key": "abc-1", "If-Match": '"7"'},
    )
    assert (request.key, request.scope_id, request.value_json) == ("greeting", "acme", '"hi"')
    assert request.scope_kind == config_pb2.SCOPE_KIND_TENANT
    assert (request.request_id, request.expected_version) == ("abc-1", 7)
    assert not build(SET_VALUE, {"key": "k"}, body={}).HasField("expected_version")  # no If-Match: any version
    assert not build(SET_VALUE, {"key": "k"}, body={}, headers={"If-Match": "*"}).HasField("expected_version")


def test_a_field_given_by_header_or_path_cannot_also_come_in_the_body():
    with pytest.raises(BadRequest, match="request_id"):
        build(SET_VALUE, {"key": "k"}, body={"request_id": "sneaky"})
    with pytest.raises(BadRequest, match="key"):
        build(SET_VALUE, {"key": "k"}, body={"key": "other"})


def test_query_parameters_fill_a_read_and_unknown_or_repeated_ones_are_refused():
    request = build(LEDGER, {"tenant_id": "acme", "wallet_id": "w"}, {"page_size": ["20"], "page_token": ["t"]})
    assert (request.tenant_id, request.wallet_id, request.page_size, request.page_token) == ("acme", "w", 20, "t")
    with pytest.raises(BadRequest, match="colour"):
        build(LEDGER, {"tenant_id": "a", "wallet_id": "w"}, {"colour": ["red"]})
    with pytest.raises(BadRequest, match="2 times"):
        build(LEDGER, {"tenant_id": "a", "wallet_id": "w"}, {"page_size": ["1", "2"]})
    with pytest.raises(BadRequest, match="page_size"):
        build(LEDGER, {"tenant_id": "a", "wallet_id": "w"}, {"page_size": ["many"]})


@pytest.mark.parametrize("body", [[1, 2], "text", 7])
def test_a_body_that_is_not_an_object_is_refused(body):
    with pytest.raises(BadRequest, match="JSON object"):
        build(SET_VALUE, {"key": "k"}, body=body)


@pytest.mark.parametrize("value", ["7", '"seven"', '"7", "8"', "W/", '"' + "9" * 19 + '"'])
def test_if_match_takes_exactly_one_version_tag(value):
    with pytest.raises(BadRequest, match="If-Match"):
        rest.parse_etag(value)
    assert rest.parse_etag('W/"12"') == rest.parse_etag('"12"') == 12


@pytest.mark.parametrize("key", ["", " ", "x" * 201, "naïve", "two words"])
def test_an_idempotency_key_is_visible_ascii_of_bounded_length(key):
    with pytest.raises(BadRequest, match="Idempotency-Key"):
        build(SET_VALUE, {"key": "k"}, body={}, headers={"Idempotency-Key": key})


def test_a_refusal_becomes_a_problem_naming_the_rule_and_its_http_status():
    p = rest.problem_of(grpc.StatusCode.FAILED_PRECONDITION, "InsufficientFunds: balance 5 < 10")
    assert (p.status, p.rule, p.detail) == (409, "InsufficientFunds", "balance 5 < 10")
    p = rest.problem_of(grpc.StatusCode.FAILED_PRECONDITION, "VersionConflict: expected version 3 but wallet w is at 4")
    assert (p.status, p.rule) == (412, "VersionConflict")
    p = rest.problem_of(grpc.StatusCode.RESOURCE_EXHAUSTED, "too many login attempts from this address; retry in 12 s")
    assert (p.status, p.headers["Retry-After"]) == (429, "12")
    p = rest.problem_of(grpc.StatusCode.UNAUTHENTICATED, "token expired")
    assert p.status == 401 and p.headers["WWW-Authenticate"].startswith("Bearer")
    assert rest.problem_of(grpc.StatusCode.UNAVAILABLE, "").headers["Retry-After"] == "1"
    internal = rest.problem_of(grpc.StatusCode.INTERNAL, "Traceback: secret path /srv/x.py")
    assert internal.status == 502 and "Traceback" not in internal.detail
    body = p.body("/v1/me", "rid")
    assert body["type"] == "/problems/Unauthenticated" and body["instance"] == "/v1/me" and body["request_id"] == "rid"


def test_a_consistency_token_names_its_path_and_version_and_a_forged_one_is_refused():
    token = rest.consistency_token("/v1/tenants/acme", 9)
    assert rest.parse_consistency_token(token) == ("/v1/tenants/acme", 9)
    for forged in ("%%%", "bm90aGluZw", rest.consistency_token("/p", 1)[:-3] + "!!!"):
        with pytest.raises(BadRequest):
            rest.parse_consistency_token(forged)


def test_declarations_that_cannot_work_fail_at_start():
    with pytest.raises(ValueError, match="no field nothing"):
        rest.check_routes([Route("GET", "/v1/x/{nothing}", CONFIG.GetEffectiveValue, "x")])
    with pytest.raises(ValueError, match="declared twice"):
        rest.check_routes([SET_VALUE, SET_VALUE])
    rest.check_routes(bootstrap.http_routes())


def test_the_document_has_one_operation_per_route_unique_ids_and_links_to_existing_reads():
    from poseidon import roles

    document = roles.api_document(bootstrap.settings({}))
    assert document["openapi"] == "3.1.0"
    operations = [op for item in document["paths"].values() for op in item.values()]
    ids = [op["operationId"] for op in operations]
    assert len(ids) == len(set(ids)) == len(bootstrap.http_routes()) + 4  # + openapi, JWKS, metadata, token
    schemes = document["components"]["securitySchemes"]
    for op in operations:
        assert all(name in schemes for requirement in op.get("security", []) for name in requirement), op["operationId"]
    for op in operations:
        for response in op["responses"].values():
            for link in response.get("links", {}).values():
                assert link["operationId"] in ids
    create = document["paths"]["/v1/tenants"]["post"]
    assert create["responses"]["201"]["links"]["GetTenant"]["parameters"] == {"tenant_id": "$response.body#/tenant_id"}
    assert {p["name"] for p in create["parameters"]} == {"Idempotency-Key"}
    assert "command_id" not in create["requestBody"]["content"]["application/json"]["schema"]["properties"]
    put = document["paths"]["/v1/config/values/{key}"]["put"]
    assert "412" in put["responses"] and "If-Match" in {p["name"] for p in put["parameters"]}
    assert document["paths"]["/v1/sessions"]["post"]["security"] == []
    balance = document["components"]["schemas"]["poseidon.wallet.v1.Balance"]
    assert balance["properties"]["balance"]["type"] == ["integer", "string"]
    assert balance["properties"]["updated_at"] == {"type": "string", "format": "date-time"}


def test_an_idempotency_key_is_the_callers_own_command_id():
    alice = build(SET_VALUE, {"key": "k"}, body={}, headers={"Idempotency-Key": "k-1"}, caller="alice")
    again = build(SET_VALUE, {"key": "k"}, body={}, headers={"Idempotency-Key": "k-1"}, caller="alice")
    bob = build(SET_VALUE, {"key": "k"}, body={}, headers={"Idempotency-Key": "k-1"}, caller="bob")
    assert alice.request_id == again.request_id != bob.request_id
    assert "k-1" not in alice.request_id


def test_a_boolean_query_parameter_is_true_or_false():
    route = Route("GET", "/v1/tenants/{tenant_id}/subscriptions", methods(app_pb2, "AppQuery").ListSubscriptions, "Subs")
    assert build(route, {"tenant_id": "t"}, {"active_only": ["true"]}).active_only is True
    assert build(route, {"tenant_id": "t"}, {"active_only": ["false"]}).active_only is False
    with pytest.raises(BadRequest, match="true or false"):
        build(route, {"tenant_id": "t"}, {"active_only": ["yes"]})


def test_a_write_may_hand_out_consistency_tokens_only_for_a_read_with_a_version():
    channels = methods(tenant_pb2, "TenantQuery").ListChannels
    connect = methods(tenant_pb2, "TenantChannels").ConnectChannel
    read = Route("GET", "/v1/tenants/{tenant_id}/channels", channels, "Channels")
    write = Route("POST", "/v1/tenants/{tenant_id}/channels", connect, "Connect", affects="/v1/tenants/{tenant_id}/channels")
    with pytest.raises(ValueError, match="consistency token"):
        rest.check_routes([read, write])


def test_an_unavailable_hub_is_reported_without_the_platforms_inner_addresses():
    inner = "failed to connect to all addresses; last error: UNKNOWN: ipv4:10.0.3.7:50056: Connection refused"
    p = rest.problem_of(grpc.StatusCode.UNAVAILABLE, inner)
    assert p.status == 503 and "10.0.3.7" not in p.detail and p.headers["Retry-After"] == "1"
    assert rest.problem_of(grpc.StatusCode.UNAVAILABLE, "read store unavailable, retry later").detail.startswith("read store")
    assert "50056" not in rest.problem_of(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded at 10.0.3.7:50056").detail


def test_headers_an_operation_does_not_take_are_refused_not_ignored():
    invite = Route("POST", "/v1/tenants/{tenant_id}/invitations", TENANT.InviteMember, "Invite", idempotency_field="command_id")
    with pytest.raises(BadRequest, match="If-Match"):
        build(invite, {"tenant_id": "t"}, body={}, headers={"If-Match": '"3"'})
    check = Route("POST", "/v1/x/{tenant_id}", methods(app_pb2, "AppQuery").CheckGuards, "Check")
    with pytest.raises(BadRequest, match="Idempotency-Key"):
        build(check, {"tenant_id": "t"}, body={}, headers={"Idempotency-Key": "k"})
    assert (
        build(LEDGER, {"tenant_id": "t", "wallet_id": "w"}, headers={"Idempotency-Key": "k"}).tenant_id == "t"
    )  # a read: harmless
