"""A tenant's own Odoo is called at checked public addresses only (spokes/odoo/client.public_only):
the name is resolved at each call, any non-public address refuses the call before a
connection, and the request goes to the checked address with the name in Host and SNI —
so a name re-pointed at a private or metadata address after it was saved, or answering
differently between the check and the call, never gets one. No network: a fake resolver
and an httpx mock transport that records where each request went."""

from __future__ import annotations

import httpx
import pytest

from infra.spoke import RetryableError
from spokes.odoo.client import AddressRefused, Json2Transport, OdooConnection, public_only

CONNECTION = OdooConnection("https://erp.acme.example", "acme", "bot@acme.example", "key-123", "json2")


def transport_with(answers: dict[str, list[str]]) -> tuple[Json2Transport, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=[])

    async def resolve(host: str, port: int) -> list[str]:
        given = answers[host]
        return given.pop(0) if given and isinstance(given[0], list) else given

    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return Json2Transport(http, CONNECTION, public_only(resolve)), seen


async def test_a_public_odoo_is_called_at_its_checked_address_with_its_name_in_host_and_sni():
    transport, seen = transport_with({"erp.acme.example": ["93.184.216.34"]})
    await transport.search("res.partner", [], limit=1)
    [request] = seen
    assert request.url.host == "93.184.216.34" and request.headers["Host"] == "erp.acme.example"
    assert request.extensions["sni_hostname"] == "erp.acme.example"


@pytest.mark.parametrize(
    "addresses",
    [["10.0.0.5"], ["169.254.169.254"], ["127.0.0.1"], ["93.184.216.34", "192.168.1.1"], ["::ffff:127.0.0.1"]],
)
async def test_a_name_resolving_to_any_address_that_is_not_public_is_never_called(addresses):
    transport, seen = transport_with({"erp.acme.example": addresses})
    with pytest.raises(AddressRefused, match="not called"):
        await transport.search("res.partner", [], limit=1)
    assert seen == []


async def test_a_name_re_pointed_after_a_good_call_is_refused_at_the_next_call():
    transport, seen = transport_with({"erp.acme.example": [["93.184.216.34"], ["10.1.2.3"]]})
    await transport.search("res.partner", [], limit=1)
    with pytest.raises(AddressRefused):
        await transport.search("res.partner", [], limit=1)
    assert len(seen) == 1


async def test_a_name_that_does_not_resolve_is_an_outage_not_a_refusal():
    transport, seen = transport_with({"erp.acme.example": []})
    with pytest.raises(RetryableError, match="does not resolve"):
        await transport.search("res.partner", [], limit=1)
    assert seen == []
