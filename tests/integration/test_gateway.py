"""The REST API gateway through real HTTP, over the real Identity, Tenant and Config
hubs (processors, projectors, gRPC servers) on Kafka and PostgreSQL: people register,
sign in and work in their tenant; roles and tenant isolation exactly as on gRPC;
Idempotency-Key resends; If-Match version conflicts; read-your-writes with the
consistency token; the OAuth2 token endpoint and JWKS; problems for refusals."""

from __future__ import annotations

import asyncio
import base64
import uuid

import aiohttp
import jwt
import pytest

from infra.security import PLATFORM_SCOPE
from poseidon import bootstrap
from tests.harness import free_port, mint_token, read_topic

pytestmark = pytest.mark.integration

HUBS = ("identity", "tenant", "config")
PASSWORD = "correct horse battery staple"


@pytest.fixture
async def api(platform):
    for hub in HUBS:
        for role in ("processor", "projector", "grpc"):
            platform.start(role, hub, wait=False)
    for hub in HUBS:
        for role in ("processor", "projector", "grpc"):
            await asyncio.to_thread(platform.wait_healthy, f"{hub}-{role}", 90)
    port = free_port([*platform.settings.grpc_ports.values(), *(p.ops_port for p in platform.procs.values())])
    # The test client plays a load balancer too: X-Forwarded-For names the client behind it.
    platform.launch(
        "gateway", "gateway", env={"POSEIDON_GATEWAY_PORT": str(port), "POSEIDON_GATEWAY_TRUSTED_PROXIES": "127.0.0.1"}
    )
    async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{port}") as http:
        yield Api(http, platform)


class Api:
    def __init__(self, http: aiohttp.ClientSession, platform):
        self.http, self.platform = http, platform

    async def call(self, method: str, path: str, token: str | None = None, body=None, headers=None):
        headers = dict(headers or {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        async with self.http.request(method, path, json=body, headers=headers) as r:
            data = await r.json(content_type=None)
            return r.status, data, r.headers

    async def person(self, login: str) -> tuple[str, str]:
        """Register `login` and sign in: (principal id, access token)."""
        status, reg, _ = await self.call("POST", "/v1/users", body={"login": login, "password": PASSWORD})
        assert status == 201, reg
        status, pair, _ = await self.call("POST", "/v1/sessions", body={"login": login, "password": PASSWORD})
        assert status == 201, pair
        assert pair["principal_id"] == reg["principal_id"]
        return reg["principal_id"], pair["access_token"]


async def tenant_events(settings, tenant: str) -> list:
    codec = bootstrap.codec(settings)
    return [
        codec.decode(r.value) for r in await read_topic(settings, settings.topic("tenant.events")) if r.key == tenant.encode()
    ]


def _login() -> str:
    return f"u{uuid.uuid4().hex[:12]}"


def _problem(status: int, body, headers, rule: str | None = None):
    assert headers["Content-Type"].startswith("application/problem+json"), headers
    assert body["status"] == status and body["title"] and body["detail"] and body["type"] == f"/problems/{body['rule']}"
    if rule is not None:
        assert body["rule"] == rule, body


async def test_an_admin_invites_an_agent_who_signs_in_and_reads_a_viewer_cannot_write_and_another_tenant_sees_nothing(api):
    alice_id, alice = await api.person(_login())
    bob_id, bob = await api.person(_login())
    carol_id, carol = await api.person(_login())
    tenant = f"acme-{uuid.uuid4().hex[:8]}"

    status, created, headers = await api.call("POST", "/v1/tenants", alice, {"tenant_id": tenant, "name": "Acme"})
    assert status == 201 and created["tenant_id"] == tenant and created["projected"] is True, created
    assert headers["ETag"] == f'"{created["version"]}"'
    status, invited, _ = await api.call(
        "POST", f"/v1/tenants/{tenant}/invitations", alice, {"principal_id": bob_id, "role": "agent"}
    )
    assert status == 201, invited

    status, mine, _ = await api.call("GET", "/v1/me/invitations", bob)
    assert status == 200 and [i["tenant_id"] for i in mine["invitations"]] == [tenant], mine
    status, accepted, _ = await api.call("POST", f"/v1/tenants/{tenant}/invitations/accept", bob)
    assert status == 200, accepted
    status, role, _ = await api.call("GET", f"/v1/tenants/{tenant}/my-role", bob)
    assert status == 200 and role["role"] == "agent", role
    status, members, _ = await api.call("GET", f"/v1/tenants/{tenant}/members", bob)
    assert status == 200 and {m["principal_id"]: m["role"] for m in members["members"]} == {alice_id: "owner", bob_id: "agent"}

    # An agent may read but not manage members: the hub's own rule, as a problem.
    status, body, headers = await api.call(
        "POST", f"/v1/tenants/{tenant}/invitations", bob, {"principal_id": carol_id, "role": "viewer"}
    )
    _problem(403, body, headers, "PermissionDenied")
    assert status == 403

    # Another tenant's people see nothing: the tenant answers exactly like one that does not exist.
    status, body, headers = await api.call("GET", f"/v1/tenants/{tenant}", carol)
    ghost = f"ghost-{uuid.uuid4().hex[:8]}"
    ghost_status, ghost_body, _ = await api.call("GET", f"/v1/tenants/{ghost}", carol)
    assert status == ghost_status == 403
    _problem(403, body, headers, "PermissionDenied")
    assert body["detail"].replace(tenant, "T") == ghost_body["detail"].replace(ghost, "T")
    status, body, _ = await api.call("GET", f"/v1/tenants/{tenant}/members", carol)
    assert status == 403 and alice_id not in str(body)

    # No token, a forged token: 401 with a challenge, before any hub is asked.
    status, body, headers = await api.call("GET", f"/v1/tenants/{tenant}")
    assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
    _problem(401, body, headers, "Unauthenticated")
    forged = jwt.encode({"sub": alice_id}, "not-our-key", algorithm="HS256")
    status, body, headers = await api.call("GET", f"/v1/tenants/{tenant}", forged)
    assert status == 401


async def test_an_idempotency_key_resend_gets_the_first_outcome_and_applies_once(api):
    _, alice = await api.person(_login())
    _, bob = await api.person(_login())
    tenant = f"idem-{uuid.uuid4().hex[:8]}"
    key = f"create-{uuid.uuid4()}"
    first = await api.call("POST", "/v1/tenants", alice, {"tenant_id": tenant, "name": "Once"}, {"Idempotency-Key": key})
    again = await api.call("POST", "/v1/tenants", alice, {"tenant_id": tenant, "name": "Once"}, {"Idempotency-Key": key})
    assert first[0] == again[0] == 201
    assert first[1]["command_id"] == again[1]["command_id"]
    assert again[1]["duplicate"] is True and again[2]["Idempotent-Replayed"] == "true"
    assert again[1]["version"] == first[1]["version"]
    # Without the key, the same create is a new command, refused by the aggregate's rule.
    status, body, headers = await api.call("POST", "/v1/tenants", alice, {"tenant_id": tenant, "name": "Twice"})
    assert status == 409
    _problem(409, body, headers)
    events = await tenant_events(api.platform.settings, tenant)
    assert [d.name for d in events].count("poseidon.tenant.TenantCreated") == 1

    # Another client's same key is its own: its write is decided, not answered with alice's outcome.
    other = f"idem-{uuid.uuid4().hex[:8]}"
    status, mine, headers = await api.call(
        "POST", "/v1/tenants", bob, {"tenant_id": other, "name": "Mine"}, {"Idempotency-Key": key}
    )
    assert status == 201 and mine["tenant_id"] == other and not mine["duplicate"] and "Idempotent-Replayed" not in headers

    # A create without a tenant id, resent with its key, names the same new tenant once.
    unnamed = f"unnamed-{uuid.uuid4()}"
    one = await api.call("POST", "/v1/tenants", alice, {"name": "Unnamed"}, {"Idempotency-Key": unnamed})
    two = await api.call("POST", "/v1/tenants", alice, {"name": "Unnamed"}, {"Idempotency-Key": unnamed})
    assert one[0] == two[0] == 201 and one[1]["tenant_id"] == two[1]["tenant_id"] and two[1]["duplicate"] is True


async def test_if_match_with_a_stale_version_is_refused_with_412_and_the_current_version_wins(api):
    _, alice = await api.person(_login())
    tenant = f"cfg-{uuid.uuid4().hex[:8]}"
    assert (await api.call("POST", "/v1/tenants", alice, {"tenant_id": tenant, "name": "Cfg"}))[0] == 201
    scope = {"scope_kind": "SCOPE_KIND_TENANT", "scope_id": tenant}
    path = "/v1/config/values/greeting.text"
    status, set1, h1 = await api.call("PUT", path, alice, {**scope, "value_json": '"hello"'}, {"If-Match": '"0"'})
    assert status == 200 and set1["version"] == 1 and h1["ETag"] == '"1"', set1
    status, body, headers = await api.call("PUT", path, alice, {**scope, "value_json": '"hi"'}, {"If-Match": '"0"'})
    assert status == 412
    _problem(412, body, headers, "VersionConflict")
    status, set2, _ = await api.call("PUT", path, alice, {**scope, "value_json": '"hi"'}, {"If-Match": h1["ETag"]})
    assert status == 200 and set2["version"] == 2
    status, body, headers = await api.call("PUT", path, alice, {**scope, "value_json": '"x"'}, {"If-Match": "seven"})
    assert status == 400
    _problem(400, body, headers, "InvalidArgument")


async def test_a_read_given_the_consistency_token_of_a_write_shows_that_write(api):
    _, alice = await api.person(_login())
    bob_id, _ = await api.person(_login())
    tenant = f"ryw-{uuid.uuid4().hex[:8]}"
    assert (await api.call("POST", "/v1/tenants", alice, {"tenant_id": tenant, "name": "RYW"}))[0] == 201
    status, invited, headers = await api.call(
        "POST", f"/v1/tenants/{tenant}/invitations", alice, {"principal_id": bob_id, "role": "viewer"}
    )
    assert status == 201
    token = headers["Poseidon-Consistency-Token"]
    status, read, read_headers = await api.call(
        "GET", f"/v1/tenants/{tenant}", alice, headers={"Poseidon-Consistency-Token": token}
    )
    assert status == 200 and read["version"] >= invited["version"], (read, invited)
    assert read_headers["ETag"] == f'"{read["version"]}"'
    status, body, headers = await api.call("GET", f"/v1/tenants/{tenant}", alice, headers={"Poseidon-Consistency-Token": "%%%"})
    assert status == 400
    _problem(400, body, headers)

    # A token naming a version the tenant never reaches: the read waits a bounded time, then
    # answers what there is, marked stale (each retry charged to the caller, not free for the hub).
    from infra import rest

    ahead = rest.consistency_token(f"/v1/tenants/{tenant}", read["version"] + 1000)
    started = asyncio.get_running_loop().time()
    status, late, headers = await api.call("GET", f"/v1/tenants/{tenant}", alice, headers={"Poseidon-Consistency-Token": ahead})
    waited = asyncio.get_running_loop().time() - started
    assert status == 200 and headers["Poseidon-Consistency"] == "stale" and late["version"] == read["version"]
    assert waited <= api.platform.settings.gateway_consistency_wait_s + 2


async def test_the_request_and_correlation_ids_come_back_and_the_correlation_id_reaches_the_events(api):
    _, alice = await api.person(_login())
    tenant = f"corr-{uuid.uuid4().hex[:8]}"
    correlation = f"web-{uuid.uuid4()}"
    status, _, headers = await api.call(
        "POST", "/v1/tenants", alice, {"tenant_id": tenant, "name": "C"}, {"X-Correlation-Id": correlation}
    )
    assert status == 201 and headers["X-Correlation-Id"] == correlation and uuid.UUID(headers["X-Request-Id"])
    events = await tenant_events(api.platform.settings, tenant)
    assert events and {d.record["envelope"]["correlation_id"] for d in events} == {correlation}


async def test_malformed_requests_get_problems_naming_what_is_wrong(api):
    _, alice = await api.person(_login())
    status, body, headers = await api.call("POST", "/v1/tenants", alice, {"tenant_id": "x", "nme": "typo"})
    assert status == 400 and "nme" in body["detail"]
    _problem(400, body, headers)
    async with api.http.post(
        "/v1/tenants", data=b"{not json", headers={"Authorization": f"Bearer {alice}", "Content-Type": "application/json"}
    ) as r:
        assert r.status == 400 and (await r.json(content_type=None))["rule"] == "InvalidArgument"
    async with api.http.post(
        "/v1/tenants", data=b"name=x", headers={"Authorization": f"Bearer {alice}", "Content-Type": "text/plain"}
    ) as r:
        assert r.status == 415
    async with api.http.post(
        "/v1/tenants", data=b"x" * (300 * 1024), headers={"Authorization": f"Bearer {alice}", "Content-Type": "application/json"}
    ) as r:
        assert r.status == 413 and r.headers["Content-Type"].startswith("application/problem+json")
    status, body, headers = await api.call("GET", "/v1/nowhere", alice)
    assert status == 404
    _problem(404, body, headers, "NoSuchPath")
    status, body, headers = await api.call("PATCH", "/v1/tenants", alice)
    assert status == 405 and "GET" in headers["Allow"]
    status, body, _ = await api.call("GET", "/v1/tenants?page_size=abc", alice)
    assert status == 400 and "page_size" in body["detail"]
    status, body, _ = await api.call("GET", "/v1/tenants?colour=red", alice)
    assert status == 400 and "colour" in body["detail"]


async def test_the_oauth_token_endpoint_serves_client_credentials_to_services_and_rotates_refresh_tokens(api, platform):
    # A service principal (registered by a platform operator) gets tokens with client credentials.
    operator = mint_token(platform.settings, "platform-operator", "service", [PLATFORM_SCOPE])
    client_id, secret = f"erp-{uuid.uuid4().hex[:8]}", "s3rvice-secret-for-tests"
    status, reg, _ = await api.call("POST", "/v1/service-principals", operator, {"login": client_id, "password": secret})
    assert status == 201, reg
    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    async with api.http.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, headers={"Authorization": f"Basic {basic}"}
    ) as r:
        assert r.status == 200 and r.headers["Cache-Control"] == "no-store"
        token = await r.json()
    assert token["token_type"] == "Bearer" and token["expires_in"] > 0 and "refresh_token" not in token
    status, me, _ = await api.call("GET", "/v1/me", token["access_token"])
    assert status == 200 and me["principal_id"] == reg["principal_id"] and me["kind"] == "service"

    # The token verifies against the published JWKS alone.
    async with api.http.get("/.well-known/jwks.json") as r:
        jwks = await r.json()
    header = jwt.get_unverified_header(token["access_token"])
    jwk = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
    claims = jwt.decode(token["access_token"], jwt.PyJWK(jwk).key, algorithms=["ES256"], audience=platform.settings.jwt_audience)
    assert claims["sub"] == reg["principal_id"]
    async with api.http.get("/.well-known/oauth-authorization-server") as r:
        meta = await r.json()
    assert meta["token_endpoint"].endswith("/oauth/token") and meta["jwks_uri"].endswith("/.well-known/jwks.json")

    # Wrong secret, a person's login as a client, unknown grant: RFC 6749 errors.
    bad = base64.b64encode(f"{client_id}:wrong".encode()).decode()
    async with api.http.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, headers={"Authorization": f"Basic {bad}"}
    ) as r:
        assert r.status == 401 and (await r.json())["error"] == "invalid_client"
    person = _login()
    await api.person(person)
    form = {"grant_type": "client_credentials", "client_id": person, "client_secret": PASSWORD}
    async with api.http.post("/oauth/token", data=form) as r:
        assert r.status == 401 and (await r.json())["error"] == "invalid_client"
    async with api.http.post("/oauth/token", data={"grant_type": "password"}) as r:
        assert r.status == 400 and (await r.json())["error"] == "unsupported_grant_type"

    # A person's refresh token works once: the rotation gives a new one, the old one is refused.
    status, pair, _ = await api.call("POST", "/v1/sessions", body={"login": person, "password": PASSWORD})
    assert status == 201
    async with api.http.post("/oauth/token", data={"grant_type": "refresh_token", "refresh_token": pair["refresh_token"]}) as r:
        assert r.status == 200
        rotated = await r.json()
    assert rotated["refresh_token"] != pair["refresh_token"]
    async with api.http.post("/oauth/token", data={"grant_type": "refresh_token", "refresh_token": pair["refresh_token"]}) as r:
        assert r.status == 400 and (await r.json())["error"] == "invalid_grant"


async def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_rate_limit(api, platform):
    async def refresh(client: str) -> int:
        headers = {"X-Forwarded-For": f"198.51.100.99, {client}"}  # the leftmost entry is the client's word: ignored
        status, _, _ = await api.call("POST", "/v1/sessions/refresh", body={"refresh_token": "nope"}, headers=headers)
        return status

    statuses = [await refresh("203.0.113.7") for _ in range(int(platform.settings.gateway_rate_per_s_client * 2) + 10)]
    assert statuses[0] == 401 and statuses[-1] == 429
    assert await refresh("203.0.113.8") == 401  # another client behind the same proxy is not held back


async def test_a_client_over_its_rate_gets_429_with_retry_after(api, platform):
    _, alice = await api.person(_login())
    statuses, retry = [], None
    for _ in range(int(platform.settings.gateway_rate_per_s_client * 2) + 10):
        status, body, headers = await api.call("GET", "/v1/me", alice)
        statuses.append(status)
        if status == 429:
            retry = headers["Retry-After"]
            assert body["rule"] == "RateLimited"
            break
    assert statuses[0] == 200 and statuses[-1] == 429 and int(retry) >= 1


async def test_cors_lets_only_the_configured_origins_in(platform, api):
    origin = "https://app.example.com"
    port = free_port([*platform.settings.grpc_ports.values(), *(p.ops_port for p in platform.procs.values())])
    platform.launch("gateway-cors", "gateway", env={"POSEIDON_GATEWAY_PORT": str(port), "POSEIDON_GATEWAY_CORS_ORIGINS": origin})
    async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{port}") as http:
        preflight = {"Origin": origin, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}
        async with http.options("/v1/tenants", headers=preflight) as r:
            assert r.status == 204 and r.headers["Access-Control-Allow-Origin"] == origin
            assert "Idempotency-Key" in r.headers["Access-Control-Allow-Headers"]
        async with http.options("/v1/tenants", headers={**preflight, "Origin": "https://evil.example"}) as r:
            assert r.status == 403 and "Access-Control-Allow-Origin" not in r.headers
        async with http.get("/openapi.json", headers={"Origin": origin}) as r:
            assert r.headers["Access-Control-Allow-Origin"] == origin and "ETag" in r.headers["Access-Control-Expose-Headers"]
