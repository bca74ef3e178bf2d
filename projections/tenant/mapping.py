"""Pure mapping of tenant events to read-store statements. Every statement after
the tenant's creation first moves the tenant row's version forward (only if it
is behind the event's version) and changes memberships or invitations only when
that happened, in one statement: a replayed event changes nothing, and events of
one tenant apply in order whatever batch they arrive in. A channel account's
events are one version-guarded upsert of its row each, which gives the same
guarantees in any order."""

from __future__ import annotations

from infra.projection import Statement

# Phases: the tenant row exists before anything guards on its version; every
# other statement runs in event order (the version guard needs it). Channel
# accounts touch no tenant row: their own phase lets their upserts batch.
CREATED, CHANGED, CHANNEL = 0, 1, 2

CREATE = """INSERT INTO tenants (tenant_id, name, version, created_by, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT (tenant_id) DO NOTHING"""

# $1 tenant id, $2 event version, $3 occurred at: the shared guard of every change.
_BUMP = """WITH bumped AS (
    UPDATE tenants SET version = $2::bigint, updated_at = $3::timestamptz
    WHERE tenant_id = $1::text AND version < $2::bigint RETURNING tenant_id)
"""
JOIN = (
    _BUMP
    + """, accepted AS (
    DELETE FROM invitations i USING bumped WHERE i.tenant_id = bumped.tenant_id AND i.principal_id = $4::text)
INSERT INTO memberships (tenant_id, principal_id, role, joined_at)
SELECT tenant_id, $4::text, $5::text, $3::timestamptz FROM bumped
ON CONFLICT (tenant_id, principal_id) DO UPDATE SET role = EXCLUDED.role, joined_at = EXCLUDED.joined_at"""
)
INVITE = (
    _BUMP
    + """INSERT INTO invitations (tenant_id, principal_id, role, invited_by, invited_at)
SELECT tenant_id, $4::text, $5::text, $6::text, $3::timestamptz FROM bumped
ON CONFLICT (tenant_id, principal_id) DO UPDATE
SET role = EXCLUDED.role, invited_by = EXCLUDED.invited_by, invited_at = EXCLUDED.invited_at"""
)
WITHDRAW = _BUMP + """DELETE FROM invitations i USING bumped WHERE i.tenant_id = bumped.tenant_id AND i.principal_id = $4::text"""
CHANGE_ROLE = (
    _BUMP
    + """UPDATE memberships m SET role = $5::text FROM bumped
WHERE m.tenant_id = bumped.tenant_id AND m.principal_id = $4::text"""
)
# One UPDATE, not _BUMP + UPDATE: a statement cannot change the row its own CTE just changed.
ARCHIVE = """UPDATE tenants SET version = $2::bigint, updated_at = $3::timestamptz, archived_at = $3::timestamptz
WHERE tenant_id = $1::text AND version < $2::bigint"""
REMOVE = _BUMP + """DELETE FROM memberships m USING bumped WHERE m.tenant_id = bumped.tenant_id AND m.principal_id = $4::text"""
# One tenant's Odoo connection: the bump and the upsert in one statement, guarded by both versions.
ODOO = (
    _BUMP
    + """INSERT INTO odoo_connections
    (tenant_id, url, database, login, sealed_api_key, protocol, version, connected_at, updated_at)
SELECT tenant_id, $4::text, $5::text, $6::text, $7::text, $8::text, $2::bigint, $3::timestamptz, $3::timestamptz FROM bumped
ON CONFLICT (tenant_id) DO UPDATE SET url = EXCLUDED.url, database = EXCLUDED.database, login = EXCLUDED.login,
    sealed_api_key = EXCLUDED.sealed_api_key, protocol = EXCLUDED.protocol, version = EXCLUDED.version,
    updated_at = EXCLUDED.updated_at
WHERE odoo_connections.version < EXCLUDED.version"""
)

# $1 channel, $2 account id, $3 owning tenant, $4 connected, $5 event version, $6 occurred at,
# $7 proof, $8 sealed token, $9 needs reauthorization, $10 its reason, $11 keep the stored
# proof and token, $12 keep the stored reauthorization state (events that do not change them).
CHANNEL_STATE = """INSERT INTO channel_accounts (channel, account_id, tenant_id, connected, version, connected_at, updated_at,
    proof, sealed_token, needs_reauthorization, reauthorization_reason)
VALUES ($1, $2, $3, $4, $5, $6, $6, $7, $8, $9, $10)
ON CONFLICT (channel, account_id) DO UPDATE SET tenant_id = EXCLUDED.tenant_id, connected = EXCLUDED.connected,
    version = EXCLUDED.version, updated_at = EXCLUDED.updated_at,
    connected_at = CASE WHEN EXCLUDED.connected THEN EXCLUDED.connected_at ELSE channel_accounts.connected_at END,
    proof = CASE WHEN $11::boolean THEN channel_accounts.proof ELSE EXCLUDED.proof END,
    sealed_token = CASE WHEN $11::boolean THEN channel_accounts.sealed_token ELSE EXCLUDED.sealed_token END,
    needs_reauthorization = CASE WHEN $12::boolean
        THEN channel_accounts.needs_reauthorization ELSE EXCLUDED.needs_reauthorization END,
    reauthorization_reason = CASE WHEN $12::boolean
        THEN channel_accounts.reauthorization_reason ELSE EXCLUDED.reauthorization_reason END
WHERE channel_accounts.version < EXCLUDED.version"""
_CHANNEL_EVENTS = frozenset(
    {"ChannelConnected", "ChannelReconnected", "ChannelDisconnected", "ChannelMoved", "ChannelReauthorizationRequired"}
)


def channel_state(kind: str, record: dict) -> Statement:
    """The one upsert of a channel account's row for each of its events."""
    env = record["envelope"]
    tenant_id, version, at = env["tenant_id"], env["aggregate_version"], env["occurred_at"]
    proof, token = record.get("proof", ""), record.get("sealed_token", "")
    if kind == "ChannelMoved":  # arrives at its new owner disconnected, with no token of the old one's
        values = (record["to_tenant_id"], False, "", "", False, "", False, False)
    elif kind == "ChannelReauthorizationRequired":
        values = (tenant_id, True, "", "", True, record.get("reason", ""), True, False)
    elif kind == "ChannelDisconnected":
        values = (tenant_id, False, "", "", False, "", True, True)
    elif token:  # connected with proof (a reconnection with proof rotates the token, ends a reauthorization)
        values = (tenant_id, True, proof, token, False, "", False, False)
    elif kind == "ChannelConnected":
        values = (tenant_id, True, "", "", False, "", False, False)
    else:  # reconnected without a token: what was stored stays
        values = (tenant_id, True, "", "", False, "", True, True)
    owner, connected, *rest = values
    args = (record["channel"], record["account_id"], owner, connected, version, at, *rest)
    return Statement(CHANNEL_STATE, args, phase=CHANNEL)


def apply(event_type: str, record: dict) -> list[Statement]:
    env = record["envelope"]
    tenant_id, version, at = env["tenant_id"], env["aggregate_version"], env["occurred_at"]
    kind = event_type.rsplit(".", 1)[-1]
    if kind in _CHANNEL_EVENTS:
        return [channel_state(kind, record)]
    if kind == "TenantCreated":
        return [Statement(CREATE, (tenant_id, record["name"], version, env["actor"], at), phase=CREATED)]
    guarded = (tenant_id, version, at)
    if kind == "MemberJoined":
        return [Statement(JOIN, (*guarded, record["principal_id"], record["role"]), phase=CHANGED)]
    if kind == "MemberInvited":
        return [Statement(INVITE, (*guarded, record["principal_id"], record["role"], env["actor"]), phase=CHANGED)]
    if kind == "InvitationWithdrawn":
        return [Statement(WITHDRAW, (*guarded, record["principal_id"]), phase=CHANGED)]
    if kind == "MemberRoleChanged":
        return [Statement(CHANGE_ROLE, (*guarded, record["principal_id"], record["role"]), phase=CHANGED)]
    if kind == "MemberRemoved":
        return [Statement(REMOVE, (*guarded, record["principal_id"]), phase=CHANGED)]
    if kind == "TenantArchived":
        return [Statement(ARCHIVE, guarded, phase=CHANGED)]
    if kind == "OdooConnected":
        odoo = (record["url"], record["database"], record["login"], record["sealed_api_key"], record["protocol"])
        return [Statement(ODOO, (*guarded, *odoo), phase=CHANGED)]
    raise ValueError(f"the tenant read model has no mapping for {event_type}")
