"""Checking a tenant's Odoo connection before it is saved, for the Tenant hub
(`hubs.tenant.erp.OdooCheck`): authenticates against that Odoo with the given URL,
database, login and API key over the chosen protocol — XML-RPC `common.authenticate`,
or a JSON-2 `res.partner.search` with the key as bearer (JSON-2 has no login call) —
and names what is wrong when it fails. Outside POSEIDON_DEV_MODE the URL's host must
resolve to public addresses only (the attachment fetcher's one address check,
`spokes.minio.translate.address_refusal`): a tenant admin may not make the platform
probe its own network or the cloud's metadata service. One attempt under the spoke
runtime's one policy (`SpokeContext.call`: the breaker of (odoo-connect, tenant)): an admin waits on
the other end, and a failed check must not hold up the tenant's messages. Never logs
a key."""

from __future__ import annotations

from urllib.parse import urlsplit

import structlog

from base.settings import Settings
from hubs.tenant.erp import (
    ODOO_ACCESS_DENIED,
    ODOO_ADDRESS_REFUSED,
    ODOO_NOT_ODOO,
    ODOO_UNAVAILABLE,
    ODOO_UNKNOWN_DATABASE,
    ODOO_UNREACHABLE,
    OdooRefused,
    OdooSettings,
)
from infra.spoke import ReauthorizationRequired, RetryableError, SpokeContext, SpokeError
from spokes.minio.client import resolve_host
from spokes.minio.translate import address_refusal
from spokes.odoo.client import AddressRefused, Json2Transport, OdooConnection, XmlRpcTransport, public_only
from spokes.odoo.spoke import SPOKE
from spokes.odoo.translate import PARTNER_MODEL

log = structlog.get_logger(__name__)

CHECK_SYSTEM = "odoo-connect"
"""Breakers and metrics of the checks: apart from the spoke's own, so an admin's typos never open a tenant's breaker."""
UNREACHABLE_CODES = frozenset({"odoo_unreachable", "odoo_timeout"})


class OdooConnectionCheck:
    """`OdooCheck` over Odoo's external API; one per Tenant gRPC server, for its lifetime."""

    def __init__(self, settings: Settings, *, resolve=resolve_host):
        self.ctx = SpokeContext(SPOKE, settings.with_(spoke_max_attempts=1), None, None)  # type: ignore[arg-type]
        self.dev_mode, self.resolve = settings.dev_mode, resolve

    async def check(self, tenant_id: str, odoo: OdooSettings) -> str:
        if not self.dev_mode:  # development: the stand-ins listen on loopback
            await self._check_address(odoo.url)
        connection = OdooConnection(odoo.url, odoo.database, odoo.login, odoo.api_key, odoo.protocol)

        # Outside development the check's own calls go to the addresses just checked (no rebinding between).
        pin = None if self.dev_mode else public_only(self.resolve)

        async def authenticate() -> str:
            if connection.protocol == "json2":
                transport = Json2Transport(self.ctx.http, connection, pin)
                await transport.search(PARTNER_MODEL, [], limit=1)
                return "json2: the API key reads res.partner"
            uid = await XmlRpcTransport(self.ctx.http, connection, pin).authenticate()
            return f"xmlrpc: logged in as user {uid}"

        try:
            learnt = await self.ctx.call(tenant_id, "authenticate", authenticate, CHECK_SYSTEM, at_most_once=True)
        except SpokeError as exc:
            refused = refusal(exc)
            log.info("odoo connection refused", tenant_id=tenant_id, protocol=odoo.protocol, rule=refused.rule, code=exc.code)
            raise refused from None
        log.info("odoo connection authenticated", tenant_id=tenant_id, protocol=odoo.protocol)
        return learnt

    async def _check_address(self, url: str) -> None:
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
        try:
            addresses = await self.resolve(host, port)
        except OSError:
            addresses = []
        if not addresses:
            raise OdooRefused(ODOO_UNREACHABLE, f"{host} does not resolve; check the URL")
        for address in addresses:
            kind = address_refusal(address)
            if kind is not None:
                raise OdooRefused(ODOO_ADDRESS_REFUSED, f"{host} resolves to a {kind} address; an Odoo must be public")

    async def close(self) -> None:
        await self.ctx.http.aclose()


def refusal(exc: SpokeError) -> OdooRefused:
    """The answer for a failed check (its reason is Odoo's or the transport's, never a key)."""
    if isinstance(exc, ReauthorizationRequired) or exc.code == "odoo_access_denied":
        return OdooRefused(ODOO_ACCESS_DENIED, f"{exc.reason}; check the login and API key")
    if exc.code == AddressRefused.code:  # the name answered differently at the call than at the check
        return OdooRefused(ODOO_ADDRESS_REFUSED, f"{exc.reason}; an Odoo must be public")
    if exc.code == "odoo_unknown_database":
        return OdooRefused(ODOO_UNKNOWN_DATABASE, f"{exc.reason}; check the database name")
    if exc.code in UNREACHABLE_CODES:
        return OdooRefused(ODOO_UNREACHABLE, f"{exc.reason}; check the URL")
    if exc.code in ("odoo_not_found", "odoo_bad_response"):
        return OdooRefused(
            ODOO_NOT_ODOO,
            f"{exc.reason}; check the URL, the protocol (json2 needs Odoo 19+) and, for json2, the database name",
        )
    if isinstance(exc, RetryableError):
        return OdooRefused(ODOO_UNAVAILABLE, exc.reason)
    return OdooRefused(ODOO_NOT_ODOO, exc.reason)
