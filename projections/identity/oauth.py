"""Identity's OAuth2 face on the API gateway: the JWKS document of the public signing
keys (rotation shows as a new `kid`; verifiers anywhere check tokens with these),
authorization-server metadata (RFC 8414), and the token endpoint (RFC 6749):
`client_credentials` for external systems (a service principal's login and
secret) and `refresh_token` with rotation (each refresh token works once; a reused
one revokes its whole session). People sign in with password + TOTP at
`POST /v1/sessions`. Every answer comes from the Identity hub's gRPC methods."""

from __future__ import annotations

import base64
import binascii
import re
import time
from typing import Any
from urllib.parse import unquote_plus

import grpc
import structlog
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from infra import rest
from infra.gateway import Gateway, operation
from infra.security import Unauthenticated
from schemas.protos import identity_pb2, identity_pb2_grpc

log = structlog.get_logger(__name__)

JWKS_PATH = "/.well-known/jwks.json"
METADATA_PATH = "/.well-known/oauth-authorization-server"
TOKEN_PATH = "/oauth/token"
JWKS_CACHE_S = 60.0
GRANTS = ("client_credentials", "refresh_token")
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def jwk_of(kid: str, pem: str) -> dict[str, str]:
    """The JWK (RFC 7517/7518) of an ES256 public key given in PEM."""
    key = load_pem_public_key(pem.encode())
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise ValueError(f"signing key {kid} is not a P-256 key")
    numbers = key.public_numbers()

    def b64(n: int) -> str:
        return base64.urlsafe_b64encode(n.to_bytes(32, "big")).decode().rstrip("=")

    return {"kty": "EC", "crv": "P-256", "x": b64(numbers.x), "y": b64(numbers.y), "kid": kid, "alg": "ES256", "use": "sig"}


class OAuthError(Exception):
    """An RFC 6749 §5.2 error answer."""

    def __init__(self, status: int, error: str, description: str, headers: dict[str, str] | None = None):
        super().__init__(description)
        self.status, self.error, self.description, self.headers = status, error, description, headers or {}


_GRPC_ERRORS = {
    grpc.StatusCode.INVALID_ARGUMENT: (400, "invalid_request"),
    grpc.StatusCode.RESOURCE_EXHAUSTED: (429, "temporarily_unavailable"),
    grpc.StatusCode.UNAVAILABLE: (503, "temporarily_unavailable"),
    grpc.StatusCode.DEADLINE_EXCEEDED: (503, "temporarily_unavailable"),
}


class OAuth:
    def __init__(self, gateway: Gateway):
        self.gateway = gateway
        self._jwks: tuple[float, dict[str, Any]] | None = None

    def stub(self) -> identity_pb2_grpc.IdentityStub:
        return identity_pb2_grpc.IdentityStub(self.gateway.hubs.channel("identity"))

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get(JWKS_PATH, operation("getJwks", self.jwks))
        app.router.add_get(METADATA_PATH, operation("getAuthorizationServerMetadata", self.metadata))
        app.router.add_post(TOKEN_PATH, operation("issueToken", self.token))

    # -- JWKS and metadata ----------------------------------------------------------------

    async def jwks(self, request: web.Request) -> web.Response:
        now = time.monotonic()
        if self._jwks is None or now - self._jwks[0] > JWKS_CACHE_S:
            try:
                keys = await self.stub().GetSigningKeys(
                    identity_pb2.GetSigningKeysRequest(), metadata=self.gateway.grpc_metadata(request, bearer=False), timeout=5
                )
            except grpc.aio.AioRpcError as exc:
                return self.gateway.problem_response(request, rest.problem_of(exc.code(), exc.details() or ""))
            self._jwks = (now, {"keys": [jwk_of(k.kid, k.public_key_pem) for k in keys.keys]})
        return web.json_response(self._jwks[1], headers={"Cache-Control": f"public, max-age={int(JWKS_CACHE_S)}"})

    async def metadata(self, request: web.Request) -> web.Response:
        base = self.gateway.public_url
        settings = self.gateway.settings
        return web.json_response(
            {
                "issuer": settings.jwt_issuer,
                "token_endpoint": f"{base}{TOKEN_PATH}",
                "jwks_uri": f"{base}{JWKS_PATH}",
                "grant_types_supported": list(GRANTS),
                "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
                "response_types_supported": [],
                "service_documentation": f"{base}/openapi.json",
                "poseidon_audience": settings.jwt_audience,
                "poseidon_sign_in": f"{base}/v1/sessions",
            }
        )

    # -- the token endpoint ---------------------------------------------------------------

    async def token(self, request: web.Request) -> web.Response:
        refused = self.gateway.limit(request, self.gateway.client_address(request))
        if refused is not None:
            return _error(OAuthError(429, "temporarily_unavailable", refused.detail, refused.headers))
        try:
            if request.content_type != "application/x-www-form-urlencoded":
                raise OAuthError(400, "invalid_request", "the body must be application/x-www-form-urlencoded")
            form = await request.post()
            grant = form.get("grant_type")
            if grant == "refresh_token":
                body = await self._refresh(request, _one(form, "refresh_token"))
            elif grant == "client_credentials":
                body = await self._client_credentials(request, *_client(request, form))
            elif not grant:
                raise OAuthError(400, "invalid_request", "grant_type is required")
            else:
                raise OAuthError(400, "unsupported_grant_type", f"grant_type must be one of {', '.join(GRANTS)}")
        except OAuthError as exc:
            return _error(exc)
        return web.json_response(body, headers=_NO_STORE)

    async def _refresh(self, request: web.Request, refresh_token: str) -> dict[str, Any]:
        try:
            pair = await self.stub().Refresh(
                identity_pb2.RefreshRequest(refresh_token=refresh_token),
                metadata=self.gateway.grpc_metadata(request, bearer=False),
                timeout=30,
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNAUTHENTICATED:
                raise OAuthError(400, "invalid_grant", "the refresh token is invalid, expired, revoked or already used") from None
            raise _oauth_error(exc) from None
        return {**_token_body(pair), "refresh_token": pair.refresh_token, "refresh_expires_in": pair.refresh_expires_in}

    async def _client_credentials(self, request: web.Request, client_id: str, client_secret: str) -> dict[str, Any]:
        metadata = self.gateway.grpc_metadata(request, bearer=False)  # the Basic credentials stay here
        try:
            pair = await self.stub().Login(
                identity_pb2.LoginRequest(login=client_id, password=client_secret), metadata=metadata, timeout=30
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNAUTHENTICATED:
                raise _invalid_client() from None
            raise _oauth_error(exc) from None
        try:
            kind = self.gateway.verifier.verify(pair.access_token).kind
        except Unauthenticated:
            kind = ""
        if kind != "service":  # a person's login is not a client: end the session it just opened
            own = [("authorization", f"Bearer {pair.access_token}")]
            try:
                await self.stub().Revoke(identity_pb2.RevokeRequest(session_id=pair.session_id), metadata=own, timeout=30)
            except grpc.aio.AioRpcError as exc:  # the session expires by itself; the client is refused either way
                log.warning("could not end the session a person's login opened at the token endpoint", code=exc.code().name)
            raise _invalid_client()
        return _token_body(pair)  # no refresh token for client credentials (RFC 6749 §4.4.3)

    def openapi_paths(self) -> dict[str, dict]:
        oauth_error = {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {"error": {"type": "string"}, "error_description": {"type": "string"}},
                }
            }
        }
        token = {
            "type": "object",
            "required": ["access_token", "token_type", "expires_in"],
            "properties": {
                "access_token": {"type": "string"},
                "token_type": {"type": "string", "enum": ["Bearer"]},
                "expires_in": {"type": "integer"},
                "refresh_token": {"type": "string"},
                "refresh_expires_in": {"type": "integer"},
            },
        }
        form = {
            "type": "object",
            "required": ["grant_type"],
            "properties": {
                "grant_type": {"type": "string", "enum": list(GRANTS)},
                "refresh_token": {"type": "string"},
                "client_id": {"type": "string"},
                "client_secret": {"type": "string"},
            },
        }
        return {
            JWKS_PATH: {
                "get": {
                    "operationId": "getJwks",
                    "summary": "The public keys access tokens are signed with (JWK Set).",
                    "tags": ["identity"],
                    "security": [],
                    "responses": {
                        "200": {
                            "description": "JWK Set",
                            "content": {"application/json": {"schema": {"type": "object", "required": ["keys"]}}},
                        },
                        "503": {"description": "The Identity hub is unavailable", "content": _problem()},
                    },
                }
            },
            METADATA_PATH: {
                "get": {
                    "operationId": "getAuthorizationServerMetadata",
                    "summary": "OAuth 2.0 authorization-server metadata (RFC 8414).",
                    "tags": ["identity"],
                    "security": [],
                    "responses": {
                        "200": {"description": "Metadata", "content": {"application/json": {"schema": {"type": "object"}}}}
                    },
                }
            },
            TOKEN_PATH: {
                "post": {
                    "operationId": "issueToken",
                    "summary": "OAuth 2.0 token endpoint: client_credentials (service principals) and refresh_token (rotating).",
                    "tags": ["identity"],
                    "security": [{"client": []}, {}],  # HTTP Basic, or the client's id and secret in the form
                    "requestBody": {"required": True, "content": {"application/x-www-form-urlencoded": {"schema": form}}},
                    "responses": {
                        "200": {"description": "An access token", "content": {"application/json": {"schema": token}}},
                        "400": {
                            "description": "invalid_request, invalid_grant or unsupported_grant_type",
                            "content": oauth_error,
                        },
                        "401": {"description": "invalid_client", "content": oauth_error},
                        "429": {"description": "Too many requests: wait Retry-After seconds", "content": oauth_error},
                        "503": {"description": "The Identity hub is unavailable", "content": oauth_error},
                    },
                }
            },
        }


def _problem() -> dict:
    return {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}


def _one(form, name: str) -> str:
    values = form.getall(name, [])
    if len(values) != 1 or not isinstance(values[0], str) or not values[0]:
        raise OAuthError(400, "invalid_request", f"{name} is required, once")
    return values[0]


def _client(request: web.Request, form) -> tuple[str, str]:
    """The client's id and secret: HTTP Basic (RFC 6749 §2.3.1) or the form, not both."""
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("basic "):
        if "client_secret" in form:
            raise OAuthError(400, "invalid_request", "give the client's credentials once: Basic or the form, not both")
        try:
            client_id, sep, secret = base64.b64decode(header[6:].strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise _invalid_client() from None
        if not sep:
            raise _invalid_client()
        return unquote_plus(client_id), unquote_plus(secret)
    if "client_id" not in form or "client_secret" not in form:
        raise _invalid_client()
    return _one(form, "client_id"), _one(form, "client_secret")


def _invalid_client() -> OAuthError:
    return OAuthError(401, "invalid_client", "unknown client or wrong secret", {"WWW-Authenticate": 'Basic realm="poseidon"'})


def _oauth_error(exc: grpc.aio.AioRpcError) -> OAuthError:
    status, error = _GRPC_ERRORS.get(exc.code(), (503, "temporarily_unavailable"))
    detail = exc.details() if status != 503 else "the Identity hub is unavailable; retry"
    headers = {"Retry-After": "1"} if status in (429, 503) else {}
    if status == 429 and detail and (m := re.search(r"retry in (\d+)", detail)):
        headers["Retry-After"] = m.group(1)
    return OAuthError(status, error, detail or error, headers)


def _error(exc: OAuthError) -> web.Response:
    return web.json_response(
        {"error": exc.error, "error_description": exc.description}, status=exc.status, headers={**_NO_STORE, **exc.headers}
    )


def _token_body(pair: identity_pb2.TokenPair) -> dict[str, Any]:
    return {"access_token": pair.access_token, "token_type": "Bearer", "expires_in": pair.expires_in}
