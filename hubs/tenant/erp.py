"""What the Tenant hub needs from an ERP to accept a tenant's Odoo connection, as a
contract both sides import: the Tenant gRPC service (which holds it) and the Odoo
spoke that implements it by authenticating against that Odoo
(spokes/odoo/connect.py), wired together by the composition root. Pure."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

ODOO_CHECK = "odoo_connection_check"
"""The name under which the composition root hands the Tenant service its OdooCheck."""

# The rules a refused Odoo connection names (the gRPC answer starts with one of them).
ODOO_UNREACHABLE = "OdooUnreachable"
"""Nothing answers at the URL (wrong host or port, DNS, TLS, timeout): check the URL."""
ODOO_NOT_ODOO = "OdooNotFound"
"""Something answers at the URL but not Odoo's external API for that protocol (a wrong path,
a web site, an Odoo older than 19 for json2): check the URL and the protocol."""
ODOO_UNKNOWN_DATABASE = "OdooDatabaseNotFound"
"""The Odoo server has no database of that name: check the database."""
ODOO_ACCESS_DENIED = "OdooAccessDenied"
"""Odoo refused the login or API key: check both, or make a new API key."""
ODOO_ADDRESS_REFUSED = "OdooAddressRefused"
"""The URL's host resolves to an address the platform does not call for a tenant (loopback,
private, link-local, cloud metadata…): an Odoo must be reachable on the internet."""
ODOO_UNAVAILABLE = "OdooUnavailable"
"""Odoo answered with a server error or rate limit: try again later."""


@dataclass(frozen=True)
class OdooSettings:
    url: str
    database: str
    login: str
    api_key: str = field(repr=False)
    """Clear: seal it at once (infra/sealing.py); never log, store or send it as it is."""
    protocol: str = "xmlrpc"


class OdooRefused(Exception):
    """The connection does not authenticate; `rule` names why (the constants above)."""

    def __init__(self, rule: str, message: str):
        super().__init__(f"{rule}: {message}")
        self.rule, self.message = rule, message


class OdooCheck(Protocol):
    async def check(self, tenant_id: str, odoo: OdooSettings) -> str:
        """Authenticates against that Odoo with these settings; returns what it learnt
        (the user id, or the server version); raises OdooRefused otherwise."""
        ...


def odoo_key_context(tenant_id: str) -> str:
    """What a tenant's Odoo API key is sealed for (authenticated data): it opens for this tenant only."""
    return f"tenant/{tenant_id}/odoo/api-key"
