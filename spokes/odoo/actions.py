"""What the Odoo spoke does, as plain async functions ready to wire to a topic: arguments
in, an infra.spoke `Outcome` out, failures raised as infra.spoke's exceptions (after the
shared retry and breaker policy). Decides nothing about routing."""

from __future__ import annotations

from infra.spoke import Outcome, PermanentError, SpokeContext
from spokes.minio.client import resolve_host
from spokes.odoo import translate
from spokes.odoo.client import OdooClient, OdooConnection, public_only

RECORD_CUSTOMER = "odoo.record_customer"
ARCHIVE_PARTNER = "odoo.archive_partner"


def odoo_client(ctx: SpokeContext, connection: OdooConnection | None = None) -> OdooClient:
    """The client of one Odoo connection (the settings' when none is given), kept with the
    context so that XML-RPC logs in once per connection, not once per message."""
    # A tenant's own Odoo is called at checked public addresses only (its admin chose the
    # URL); the settings' development connection and development mode's stand-ins are not.
    pin = None if connection is None or ctx.settings.dev_mode else public_only(resolve_host)
    connection = connection or OdooConnection.from_settings(ctx.settings)
    # SpokeContext has no slot for a spoke's own clients; its instance dict serves, so the
    # cache lives and dies with the context instead of in module state.
    clients: dict[OdooConnection, OdooClient] = vars(ctx).setdefault("_odoo_clients", {})
    client = clients.get(connection)
    if client is None:
        client = clients[connection] = OdooClient(ctx.http, connection, pin)
    return client


async def record_customer(
    ctx: SpokeContext,
    *,
    tenant_id: str,
    channel: str,
    contact_id: str,
    display_name: str,
    phone: str | None = None,
    connection: OdooConnection | None = None,
) -> Outcome:
    """Find the channel contact's partner in the tenant's Odoo, create it if missing, and write
    `phone` when given and different. Idempotent: a second run finds the partner it created.
    `external_id` of the outcome is the partner id."""
    try:
        translate.partner_domain(channel, contact_id)  # checked before any call: a bad input is no outside failure
        new_values = translate.new_partner_values(channel, contact_id, display_name, phone)
    except translate.InvalidCustomer as exc:
        raise PermanentError(str(exc), code="invalid_customer") from None
    client = odoo_client(ctx, connection)

    async def find_or_create() -> tuple[int, bool, bool]:
        # One unit under the retry policy: a retry searches again before creating, so a
        # create whose answer was lost (a timeout after Odoo committed) is found, not repeated.
        partner = await client.find_partner(channel, contact_id)
        if partner is None:
            return await client.create_partner(new_values), True, False
        changes = translate.phone_change(partner, phone)
        if changes:
            await client.write_partner(partner["id"], changes)
        return partner["id"], False, bool(changes)

    partner_id, created, phone_updated = await ctx.call(tenant_id, RECORD_CUSTOMER, find_or_create)
    detail = "customer created" if created else "phone number updated" if phone_updated else "customer already up to date"
    return Outcome(
        RECORD_CUSTOMER,
        detail=detail,
        external_id=str(partner_id),
        data={
            "created": _flag(created),
            "phone_updated": _flag(phone_updated),
            "phone_recorded": _flag(bool(phone and phone.strip())),
            "protocol": client.protocol,
        },
    )


async def archive_partner(
    ctx: SpokeContext, *, tenant_id: str, partner_id: int, connection: OdooConnection | None = None
) -> Outcome:
    """Archive (active = False) a partner: Odoo's own way to retire a record without
    losing what refers to it. Idempotent: archiving an archived partner changes nothing."""
    client = odoo_client(ctx, connection)
    await ctx.call(tenant_id, ARCHIVE_PARTNER, lambda: client.write_partner(partner_id, {"active": False}))
    return Outcome(ARCHIVE_PARTNER, detail="partner archived", external_id=str(partner_id))


def _flag(value: bool) -> str:
    return "true" if value else "false"
