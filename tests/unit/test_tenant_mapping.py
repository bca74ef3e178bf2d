"""The tenant read model's pure event → statements mapping, fed the records the
projector receives: events the aggregate really emitted, in the processor's
envelope, through the real Avro codec. (What the SQL does to rows, replays
included, is tested against PostgreSQL in tests/integration/test_tenant_hub.py.)"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from hubs.tenant.commands import (
    AcceptInvitation,
    ArchiveTenant,
    ChangeMemberRole,
    ConnectOdoo,
    CreateTenant,
    InviteMember,
    RemoveMember,
)
from hubs.tenant.hub import HUB
from infra.hub import decide, event_payload
from projections.tenant import PROJECTION
from projections.tenant.mapping import CHANGE_ROLE, CHANGED, CREATE, CREATED, INVITE, JOIN, ODOO, REMOVE, WITHDRAW, apply
from schemas.codec import Catalog, Codec
from schemas.contracts import CommandMeta

CODEC = Codec(Catalog.load())
TENANT = "acme"


class Story:
    """Runs commands against one tenant and keeps the event records the processor
    would have published, in order."""

    def __init__(self):
        self.tenant = None
        self.records: list[tuple[str, dict]] = []

    def run(self, command_type, actor: str = "operator-cli", **payload) -> list[tuple[str, dict]]:
        command_id = str(uuid.uuid4())
        meta = CommandMeta(command_id, TENANT, TENANT, f"corr-{command_id}", command_id, actor)
        decision = decide(HUB, self.tenant, command_type(meta=meta, **payload))
        assert decision.accepted, decision.rejection
        self.tenant = decision.aggregate
        new = []
        for event in decision.events:
            name = HUB.event_name(event)
            fields = [f["name"] for f in CODEC.catalog.latest(name).parsed["fields"] if f["name"] != "envelope"]
            record = {
                "envelope": {
                    "event_id": str(uuid.uuid4()),
                    "event_type": name,
                    "aggregate_id": TENANT,
                    "aggregate_version": event.originator_version,
                    "tenant_id": TENANT,
                    "correlation_id": meta.correlation_id,
                    "causation_id": command_id,
                    "occurred_at": event.timestamp,
                    "actor": actor,
                    "previous_hash": "",
                },
                **event_payload(event, fields),
            }
            decoded = CODEC.decode(CODEC.encode(name, record))
            new.append((decoded.name, decoded.record))
        self.records.extend(new)
        return new


def statements(records):
    return [s for name, record in records for s in apply(name, record)]


def test_creating_a_tenant_inserts_the_tenant_row_first_then_the_owner_membership():
    story = Story()

    created = statements(story.run(CreateTenant, actor="signup", name="Acme", owner_id="olga"))

    assert [(s.sql, s.phase) for s in created] == [(CREATE, CREATED), (JOIN, CHANGED)]
    tenant_id, name, version, created_by, at = created[0].args
    assert (tenant_id, name, version, created_by) == (TENANT, "Acme", 1, "signup")
    assert isinstance(at, datetime) and at.tzinfo is not None
    assert created[1].args[:2] == (TENANT, 2) and created[1].args[3:] == ("olga", "owner")


def test_each_membership_event_maps_to_one_version_guarded_statement_in_event_order():
    story = Story()
    story.run(CreateTenant, name="Acme", owner_id="olga")

    invited = statements(story.run(InviteMember, actor="olga", principal_id="ann", role="agent"))
    joined = statements(story.run(AcceptInvitation, actor="ann", principal_id="ann"))
    changed = statements(story.run(ChangeMemberRole, principal_id="ann", role="admin"))
    removed = statements(story.run(RemoveMember, principal_id="ann"))
    story.run(InviteMember, principal_id="bob", role="viewer")
    withdrawn = statements(story.run(RemoveMember, principal_id="bob"))

    assert [s.sql for s in invited + joined + changed + removed + withdrawn] == [INVITE, JOIN, CHANGE_ROLE, REMOVE, WITHDRAW]
    assert {s.phase for s in invited + joined + changed + removed + withdrawn} == {CHANGED}
    assert [s.args[1] for s in invited + joined + changed + removed + withdrawn] == [3, 4, 5, 6, 8]
    assert invited[0].args[3:] == ("ann", "agent", "olga")  # the inviter is the event's actor
    assert joined[0].args[3:] == ("ann", "agent")
    assert changed[0].args[3:] == ("ann", "admin")
    assert removed[0].args[3:] == ("ann",) and withdrawn[0].args[3:] == ("bob",)


def test_every_tenant_event_schema_has_a_mapping():
    # Channel account events: tests/unit/test_tenant_channel_accounts.py (another aggregate).
    names = [
        n
        for n in CODEC.catalog.names()
        if n.startswith("poseidon.tenant.") and ".commands." not in n and not n.startswith("poseidon.tenant.Channel")
    ]
    story = Story()
    story.run(CreateTenant, name="Acme", owner_id="olga")
    story.run(InviteMember, principal_id="ann", role="agent")
    story.run(AcceptInvitation, principal_id="ann")
    story.run(ChangeMemberRole, principal_id="ann", role="viewer")
    story.run(RemoveMember, principal_id="ann")
    story.run(InviteMember, principal_id="bob", role="agent")
    story.run(RemoveMember, principal_id="bob")
    story.run(ConnectOdoo, **ODOO_FIELDS)
    story.run(ArchiveTenant, reason="onboarding compensated")

    assert sorted({name for name, _ in story.records}) == sorted(names)
    assert all(statements([r]) for r in story.records)


ODOO_FIELDS = {
    "url": "https://acme.odoo.com",
    "database": "acme",
    "login": "bot@acme.example",
    "sealed_api_key": "sealed.v1.s1-abc.AAAA",
    "protocol": "json2",
}


def test_an_odoo_connection_is_one_statement_bumping_the_tenant_and_keeping_the_key_sealed():
    story = Story()
    story.run(CreateTenant, name="Acme", owner_id="olga")

    connected = statements(story.run(ConnectOdoo, actor="olga", **ODOO_FIELDS))

    assert [(s.sql, s.phase) for s in connected] == [(ODOO, CHANGED)]
    assert connected[0].args[0] == TENANT and connected[0].args[1] == 3
    assert connected[0].args[3:] == tuple(ODOO_FIELDS.values())


def test_an_event_the_read_model_does_not_know_is_refused_for_the_dead_letter_topic():
    record = {"envelope": {"tenant_id": TENANT, "aggregate_version": 1, "occurred_at": datetime.now(UTC)}}

    with pytest.raises(ValueError, match="no mapping for poseidon.tenant.TenantRenamed"):
        apply("poseidon.tenant.TenantRenamed", record)


def test_the_read_model_declares_its_tables_and_topic():
    assert PROJECTION.name == "tenant"
    assert PROJECTION.topics == ("tenant.events",)
    assert set(PROJECTION.tables) == {"tenants", "memberships", "invitations", "channel_accounts", "odoo_connections"}
