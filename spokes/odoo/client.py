"""The I/O against a tenant's Odoo: one `OdooClient` over two transports — XML-RPC
(`/xmlrpc/2`, deprecated upstream and due for removal in Odoo 22) and the JSON-2 API
(`/json/2`, Odoo 19+) — chosen by the connection's protocol (`POSEIDON_ODOO_PROTOCOL`).
Every method raises infra.spoke's exceptions; nothing here logs keys, names or phone numbers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx
import structlog

from base.settings import Settings
from infra.spoke import PermanentError, ReauthorizationRequired, RetryableError, SpokeError
from spokes.odoo import translate
from spokes.odoo.translate import PARTNER_MODEL, Failure, Reply

log = structlog.get_logger(__name__)

USER_AGENT = "poseidon-hub/0.1 (odoo spoke)"


@dataclass(frozen=True)
class OdooConnection:
    """Where one tenant's Odoo is and how we log in."""

    url: str
    """Base URL, no trailing slash (`https://acme.odoo.com`)."""
    db: str
    """Database name (`X-Odoo-Database` on JSON-2, first argument on XML-RPC)."""
    login: str
    """The (bot) user's login; XML-RPC only — JSON-2 finds the user from the key."""
    api_key: str = field(repr=False)
    """The user's API key (or password, on XML-RPC)."""
    protocol: str = "xmlrpc"
    """`xmlrpc` or `json2`."""

    @classmethod
    def from_settings(cls, settings: Settings) -> OdooConnection:
        return cls(settings.odoo_url, settings.odoo_db, settings.odoo_user, settings.odoo_api_key, settings.odoo_protocol)


def to_exception(failure: Failure) -> SpokeError:
    if failure.kind == "reauthorize":
        return ReauthorizationRequired(failure.reason, code=failure.code)
    if failure.kind == "permanent":
        return PermanentError(failure.reason, code=failure.code)
    return RetryableError(failure.reason, code=failure.code, retry_after=failure.retry_after)


class OdooTransport(Protocol):
    """The ORM calls the spoke makes, over one protocol."""

    protocol: str

    async def version(self) -> dict[str, Any]: ...
    async def search(self, model: str, domain: list, *, limit: int | None = None, order: str | None = None) -> list[int]: ...
    async def search_read(
        self, model: str, domain: list, fields: Sequence[str], *, limit: int | None = None, order: str | None = None
    ) -> list[dict[str, Any]]: ...
    async def read(self, model: str, ids: Sequence[int], fields: Sequence[str]) -> list[dict[str, Any]]: ...
    async def create(self, model: str, values: Mapping[str, Any]) -> int: ...
    async def write(self, model: str, ids: Sequence[int], values: Mapping[str, Any]) -> bool: ...


class AddressRefused(PermanentError):
    """A tenant's Odoo name resolves to an address the platform may not call (loopback,
    private, link-local, cloud metadata…): never called, whatever the URL said when saved."""

    code = "odoo_address_refused"


Pin = Callable[[httpx.URL], Awaitable[tuple[httpx.URL, dict[str, str], dict[str, Any]]]]
"""URL → (the URL to call, headers to add, request extensions): where a request really goes."""


def public_only(resolve: Callable[[str, int], Awaitable[Sequence[str]]]) -> Pin:
    """A Pin for a tenant's own Odoo: its host is resolved at each call and refused if ANY
    address is not public; the request then goes to that checked address itself, the
    name only in the Host header and as TLS server name, so a later DNS answer (a
    rebinding, a name re-pointed at 10.x or 169.254.169.254 after it was saved) never
    gets a connection. The attachment fetcher checks its addresses the same way."""
    from spokes.minio.translate import address_refusal

    async def pin(url: httpx.URL) -> tuple[httpx.URL, dict[str, str], dict[str, Any]]:
        host = url.raw_host.decode("ascii")
        try:
            addresses = list(await resolve(host, url.port or (443 if url.scheme == "https" else 80)))
        except OSError:
            addresses = []
        if not addresses:
            raise RetryableError(f"Odoo host {host} does not resolve", code="odoo_unreachable")
        for address in addresses:
            if (kind := address_refusal(address)) is not None:
                raise AddressRefused(f"Odoo host {host} resolves to a {kind} address: not called", code=AddressRefused.code)
        extensions = {"sni_hostname": host} if url.scheme == "https" else {}
        return url.copy_with(host=addresses[0]), {"Host": url.netloc.decode("ascii")}, extensions

    return pin


class _Http:
    """One request, with transport failures turned into RetryableError; `pin`: where the
    request really goes (a tenant's own Odoo outside development: public addresses only)."""

    protocol = ""

    def __init__(self, http: httpx.AsyncClient, connection: OdooConnection, pin: Pin | None = None):
        self.http, self.connection, self.pin = http, connection, pin

    async def send(self, method: str, path: str, call: str, **kwargs: Any) -> httpx.Response:
        url = httpx.URL(f"{self.connection.url}{path}")
        if self.pin is not None:
            url, headers, extensions = await self.pin(url)
            kwargs["headers"] = {**kwargs.get("headers", {}), **headers}
            kwargs["extensions"] = {**kwargs.get("extensions", {}), **extensions}
        try:
            response = await self.http.request(method, url, **kwargs)
        except httpx.TimeoutException:
            raise RetryableError(f"{call}: Odoo did not answer in time", code="odoo_timeout") from None
        except httpx.TransportError as exc:
            raise RetryableError(f"{call}: Odoo unreachable ({type(exc).__name__})", code="odoo_unreachable") from None
        log.debug("odoo answered", call=call, protocol=self.protocol, status=response.status_code)
        return response

    @staticmethod
    def value(reply: Reply) -> Any:
        if reply.failure is not None:
            raise to_exception(reply.failure)
        return reply.value


class XmlRpcTransport(_Http):
    """`/xmlrpc/2/common` to log in once (the uid is kept), `/xmlrpc/2/object` `execute_kw` for the rest."""

    protocol = "xmlrpc"

    def __init__(self, http: httpx.AsyncClient, connection: OdooConnection, pin: Pin | None = None):
        super().__init__(http, connection, pin)
        self.uid: int | None = None
        self._login = asyncio.Lock()

    async def version(self) -> dict[str, Any]:
        return await self._rpc("common", "version", (), "common.version")

    async def authenticate(self) -> int:
        """The user id, asking Odoo once; later calls reuse it until Odoo refuses it."""
        async with self._login:  # concurrent first calls log in once
            if self.uid is None:
                c = self.connection
                uid = await self._rpc("common", "authenticate", (c.db, c.login, c.api_key, {}), "common.authenticate")
                if not isinstance(uid, int) or isinstance(uid, bool) or uid <= 0:
                    # authenticate answers False, not a fault, for a bad login or key.
                    raise ReauthorizationRequired(
                        "common.authenticate: Odoo refused the login or API key", code="odoo_access_denied"
                    )
                self.uid = uid
            return self.uid

    async def execute_kw(self, model: str, method: str, args: list, kwargs: Mapping[str, Any] | None = None) -> Any:
        uid = await self.authenticate()
        c = self.connection
        params = (c.db, uid, c.api_key, model, method, args, dict(kwargs or {}))
        try:
            return await self._rpc("object", "execute_kw", params, f"{model}.{method}")
        except ReauthorizationRequired:
            self.uid = None  # the key was revoked or the user changed: log in again next time
            raise

    async def search(self, model: str, domain: list, *, limit: int | None = None, order: str | None = None) -> list[int]:
        return await self.execute_kw(model, "search", [domain], _named(limit=limit, order=order))

    async def search_read(
        self, model: str, domain: list, fields: Sequence[str], *, limit: int | None = None, order: str | None = None
    ) -> list[dict[str, Any]]:
        return await self.execute_kw(model, "search_read", [domain], _named(fields=list(fields), limit=limit, order=order))

    async def read(self, model: str, ids: Sequence[int], fields: Sequence[str]) -> list[dict[str, Any]]:
        return await self.execute_kw(model, "read", [list(ids)], {"fields": list(fields)})

    async def create(self, model: str, values: Mapping[str, Any]) -> int:
        # One dict in, one id out (a list of dicts would give a list of ids).
        return await self.execute_kw(model, "create", [dict(values)])

    async def write(self, model: str, ids: Sequence[int], values: Mapping[str, Any]) -> bool:
        return await self.execute_kw(model, "write", [list(ids), dict(values)])

    async def _rpc(self, service: str, method: str, params: tuple, call: str) -> Any:
        response = await self.send(
            "POST",
            f"/xmlrpc/2/{service}",
            call,
            content=translate.xmlrpc_request(method, params),
            headers={"Content-Type": "text/xml", "User-Agent": USER_AGENT},
        )
        return self.value(
            translate.xmlrpc_reply(call, response.status_code, response.content, response.headers.get("Retry-After"))
        )


class Json2Transport(_Http):
    """`POST /json/2/<model>/<method>` with the API key as bearer token; all arguments named."""

    protocol = "json2"

    async def version(self) -> dict[str, Any]:
        response = await self.send("GET", "/web/version", "web.version", headers={"User-Agent": USER_AGENT})
        return self.value(translate.json2_reply("web.version", response.status_code, response.content))

    async def call(self, model: str, method: str, params: Mapping[str, Any]) -> Any:
        call = f"{model}.{method}"
        response = await self.send(
            "POST",
            f"/json/2/{model}/{method}",
            call,
            content=translate.json2_body(params),
            headers={
                "Authorization": f"bearer {self.connection.api_key}",
                "X-Odoo-Database": self.connection.db,
                "Content-Type": "application/json; charset=utf-8",
                "User-Agent": USER_AGENT,
            },
        )
        return self.value(
            translate.json2_reply(call, response.status_code, response.content, response.headers.get("Retry-After"))
        )

    async def search(self, model: str, domain: list, *, limit: int | None = None, order: str | None = None) -> list[int]:
        return await self.call(model, "search", {"domain": domain, **_named(limit=limit, order=order)})

    async def search_read(
        self, model: str, domain: list, fields: Sequence[str], *, limit: int | None = None, order: str | None = None
    ) -> list[dict[str, Any]]:
        return await self.call(
            model, "search_read", {"domain": domain, "fields": list(fields), **_named(limit=limit, order=order)}
        )

    async def read(self, model: str, ids: Sequence[int], fields: Sequence[str]) -> list[dict[str, Any]]:
        return await self.call(model, "read", {"ids": list(ids), "fields": list(fields)})

    async def create(self, model: str, values: Mapping[str, Any]) -> int:
        # create is @api.model_create_multi: JSON-2 always answers the new records' ids.
        ids = await self.call(model, "create", {"vals_list": [dict(values)]})
        return ids[0] if isinstance(ids, list) and ids else ids

    async def write(self, model: str, ids: Sequence[int], values: Mapping[str, Any]) -> bool:
        return await self.call(model, "write", {"ids": list(ids), "vals": dict(values)})


def _named(**params: Any) -> dict[str, Any]:
    # Neither protocol wants None: XML-RPC cannot carry it, and Odoo's defaults are what "unset" means.
    return {k: v for k, v in params.items() if v is not None}


class OdooClient:
    """A tenant's Odoo, whichever protocol it is reached by."""

    def __init__(self, http: httpx.AsyncClient, connection: OdooConnection, pin: Pin | None = None):
        self.connection = connection
        if connection.protocol == "xmlrpc":
            self.transport: OdooTransport = XmlRpcTransport(http, connection, pin)
        elif connection.protocol == "json2":
            self.transport = Json2Transport(http, connection, pin)
        else:
            raise ValueError(f"Odoo protocol must be xmlrpc or json2, not {connection.protocol!r}")

    @property
    def protocol(self) -> str:
        return self.transport.protocol

    async def version(self) -> dict[str, Any]:
        return await self.transport.version()

    async def find_partner(self, channel: str, contact_id: str) -> dict[str, Any] | None:
        """The partner holding this channel contact id (the oldest, if staff made duplicates)."""
        found = await self.transport.search_read(
            PARTNER_MODEL, translate.partner_domain(channel, contact_id), translate.partner_fields(channel), limit=1, order="id"
        )
        if not isinstance(found, list) or not all(isinstance(p, dict) and isinstance(p.get("id"), int) for p in found):
            raise PermanentError(
                f"{PARTNER_MODEL}.search_read: Odoo answered something other than records", code="odoo_bad_response"
            )
        return found[0] if found else None

    async def create_partner(self, values: Mapping[str, Any]) -> int:
        partner_id = await self.transport.create(PARTNER_MODEL, values)
        if not isinstance(partner_id, int) or isinstance(partner_id, bool):
            raise PermanentError(f"{PARTNER_MODEL}.create: Odoo answered no record id", code="odoo_bad_response")
        return partner_id

    async def write_partner(self, partner_id: int, values: Mapping[str, Any]) -> None:
        await self.transport.write(PARTNER_MODEL, [partner_id], values)
