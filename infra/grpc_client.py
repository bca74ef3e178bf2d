"""The one way our processes call a hub's gRPC queries: a channel to the hub's
address with a bearer-token interceptor. Services (the router) mint short
platform-scope tokens from the keyring and renew them before they expire; an
operator's CLI uses POSEIDON_TOKEN when set, otherwise mints the same way."""

from __future__ import annotations

import time

import grpc

from base.settings import Settings
from infra import tls, tracing
from infra.security import PLATFORM_SCOPE, Keyring, TokenIssuer


def grpc_target(settings: Settings, hub: str) -> str:
    """host:port of a hub's gRPC server, from the side that calls it."""
    host = settings.grpc_host if settings.grpc_host not in ("0.0.0.0", "::", "") else "127.0.0.1"
    return f"{host}:{settings.grpc_port(hub)}"


class PlatformToken(grpc.aio.UnaryUnaryClientInterceptor):
    """Adds a platform-scope bearer token to every call, minting a new one before
    the current one expires (the keyring may rotate meanwhile). A `fixed` token
    (an operator's POSEIDON_TOKEN) is sent as it is."""

    def __init__(self, settings: Settings, actor: str, *, ttl_s: int | None = None, fixed: str | None = None):
        self.settings, self.actor = settings, actor
        self.ttl_s = ttl_s if ttl_s is not None else settings.access_token_ttl_s
        self._token, self._renew_at = fixed or "", float("inf") if fixed else 0.0

    def token(self) -> str:
        now = time.monotonic()
        if now >= self._renew_at:
            issuer = TokenIssuer(Keyring.of(self.settings), self.settings)
            self._token = issuer.access_token(self.actor, "service", [PLATFORM_SCOPE], ttl_s=self.ttl_s)
            self._renew_at = now + self.ttl_s * 0.5
        return self._token

    async def intercept_unary_unary(self, continuation, details, request):
        metadata = (*(details.metadata or ()), ("authorization", f"Bearer {self.token()}"))
        return await continuation(details._replace(metadata=metadata), request)


def operator_token(settings: Settings) -> PlatformToken:
    """POSEIDON_TOKEN if set; otherwise a short platform-scope token signed with
    the local keyring — only possible where the signing keys are (an operator
    on the platform's own machine)."""
    return PlatformToken(settings, "operator-cli", ttl_s=300, fixed=settings.token or None)


def channel(settings: Settings, hub: str, token: PlatformToken) -> grpc.aio.Channel:
    """A channel to `hub`'s gRPC server that carries `token` on every call."""
    interceptors = [token, tracing.ClientTracing()] if tracing.enabled() else [token]
    return tls.channel(settings, grpc_target(settings, hub), interceptors=interceptors)
