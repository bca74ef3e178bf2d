"""The Tenant hub's business rules as given / when / then over `infra.hub.decide`,
the same pure step the aggregate processor runs. No broker, no database."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given as for_all
from hypothesis import settings
from hypothesis import strategies as st

from hubs.tenant.aggregate import ROLES, Tenant
from hubs.tenant.commands import AcceptInvitation, ArchiveTenant, ChangeMemberRole, CreateTenant, InviteMember, RemoveMember
from hubs.tenant.hub import HUB
from infra.hub import SnapshotCodec
from schemas.contracts import CommandMeta, InvalidCommand
from tests.unit.given_when_then import Fact, Hub, events_of, given, happened, then_rejected

TENANT = "acme"
OPERATOR = "operator-cli"  # not a member: authorised before sending


def meta(tenant_id: str = TENANT, *, actor: str = OPERATOR, aggregate_id: str | None = None) -> CommandMeta:
    command_id = str(uuid.uuid4())
    return CommandMeta(
        command_id=command_id,
        aggregate_id=tenant_id if aggregate_id is None else aggregate_id,
        tenant_id=tenant_id,
        correlation_id=command_id,
        causation_id=command_id,
        actor=actor,
    )


def create(owner: str = "olga", name: str = "Acme", tenant_id: str = TENANT, **m) -> CreateTenant:
    return CreateTenant(meta(tenant_id, **m), name=name, owner_id=owner)


def invite(principal: str, role: str, **m) -> InviteMember:
    return InviteMember(meta(**m), principal_id=principal, role=role)


def accept(principal: str, **m) -> AcceptInvitation:
    return AcceptInvitation(meta(**{"actor": principal, **m}), principal_id=principal)


def change(principal: str, role: str, **m) -> ChangeMemberRole:
    return ChangeMemberRole(meta(**m), principal_id=principal, role=role)


def remove(principal: str, **m) -> RemoveMember:
    return RemoveMember(meta(**m), principal_id=principal)


# -- what happened to the tenant, for `given` --


def created(owner: str = "olga", name: str = "Acme", tenant_id: str = TENANT) -> list[Fact]:
    """TenantCreated and its first owner joining, as CreateTenant records them."""
    return [
        happened(Tenant.TenantCreated, tenant_id=tenant_id, name=name),
        happened(Tenant.MemberJoined, principal_id=owner, role="owner"),
    ]


def invited(principal: str, role: str) -> Fact:
    return happened(Tenant.MemberInvited, principal_id=principal, role=role)


def joined(principal: str, role: str) -> list[Fact]:
    """Invited, then joined by accepting."""
    return [invited(principal, role), happened(Tenant.MemberJoined, principal_id=principal, role=role)]


def removed(principal: str, role: str) -> Fact:
    return happened(Tenant.MemberRemoved, principal_id=principal, role=role)


def archived(reason: str = "onboarding compensated") -> Fact:
    return happened(Tenant.TenantArchived, reason=reason)


when = Hub(HUB).when


# -- creating --------------------------------------------------------------


def test_creating_a_tenant_records_tenant_created_and_its_first_owner_joining():
    decision = when(None, create(owner="olga", name="Acme Ltd"))

    assert events_of(HUB, decision) == [
        ("TenantCreated", {"name": "Acme Ltd"}),
        ("MemberJoined", {"principal_id": "olga", "role": "owner"}),
    ]
    tenant = decision.aggregate
    assert (tenant.tenant_id, tenant.name, tenant.members, tenant.version) == (TENANT, "Acme Ltd", {"olga": "owner"}, 2)
    assert decision.events[0].originator_id == Tenant.create_id(TENANT)


def test_the_aggregate_id_of_a_tenant_is_derived_from_its_tenant_id_alone():
    assert Tenant.create_id("acme") == Tenant.create_id("acme")
    assert Tenant.create_id("acme") != Tenant.create_id("acme-2")


def test_creating_a_tenant_whose_aggregate_id_is_not_its_tenant_id_is_a_tenant_mismatch():
    then_rejected(when(None, create(aggregate_id="other")), "TenantMismatch")


def test_creating_a_tenant_twice_is_refused():
    then_rejected(when(given(created()), create(owner="someone-else")), "AggregateAlreadyExists")


@pytest.mark.parametrize("tenant_id", ["acme", "a", "tenant-a", "t0", str(uuid.uuid4()), "a" * 63])
def test_tenant_ids_are_lower_case_slugs_or_uuids(tenant_id):
    assert when(None, create(tenant_id=tenant_id)).accepted


@pytest.mark.parametrize(
    "tenant_id",
    ["", "Acme", "ACME", "-acme", "acme-", "ac me", "ac_me", "acmé", "a" * 64, str(uuid.uuid4()).upper(), "a.b", "a/b"],
)
def test_a_tenant_id_that_is_not_a_canonical_slug_is_invalid(tenant_id):
    decision = when(None, create(tenant_id=tenant_id))

    then_rejected(decision, "InvalidCommand")
    assert "tenant id" in str(decision.rejection)


@pytest.mark.parametrize("name", ["", "   ", "x" * 201])
def test_a_tenant_name_must_be_1_to_200_characters_and_not_blank(name):
    then_rejected(when(None, create(name=name)), "InvalidCommand")


def test_a_200_character_name_is_fine():
    assert when(None, create(name="x" * 200)).accepted


@pytest.mark.parametrize("owner", ["", "has space", "x" * 201, "tab\there"])
def test_the_owner_id_must_be_a_usable_principal_id(owner):
    decision = when(None, create(owner=owner))

    then_rejected(decision, "InvalidCommand")
    assert "owner_id" in str(decision.rejection)


@pytest.mark.parametrize("command", [invite("p", "viewer"), accept("p"), change("p", "admin"), remove("p")])
def test_every_other_command_needs_an_existing_tenant(command):
    then_rejected(when(None, command), "AggregateNotFound")


def test_a_command_for_a_tenant_sent_under_another_tenant_id_is_a_tenant_mismatch():
    tenant = given(created())

    then_rejected(when(tenant, InviteMember(meta("evil", aggregate_id=TENANT), principal_id="p", role="owner")), "TenantMismatch")


# -- inviting and accepting ------------------------------------------------


def test_inviting_records_member_invited_and_accepting_makes_the_invitee_a_member_with_that_role():
    tenant = given(created())

    invited = when(tenant, invite("ann", "agent"))
    assert events_of(HUB, invited) == [("MemberInvited", {"principal_id": "ann", "role": "agent"})]
    assert invited.aggregate.invitations == {"ann": "agent"} and "ann" not in invited.aggregate.members

    joined = when(invited.aggregate, accept("ann"))
    assert events_of(HUB, joined) == [("MemberJoined", {"principal_id": "ann", "role": "agent"})]
    assert joined.aggregate.members["ann"] == "agent" and joined.aggregate.invitations == {}


@pytest.mark.parametrize("role", ["", "Owner", "superuser", "member"])
def test_an_unknown_role_is_invalid(role):
    tenant = given(created(), joined("ann", "viewer"))

    then_rejected(when(tenant, invite("bob", role)), "InvalidCommand")
    then_rejected(when(tenant, change("ann", role)), "InvalidCommand")


def test_an_empty_principal_id_is_invalid():
    tenant = given(created())

    for command in (invite("", "viewer"), accept(""), change("", "admin"), remove("")):
        then_rejected(when(tenant, command), "InvalidCommand")


def test_inviting_a_member_again_is_refused_as_a_duplicate_membership():
    tenant = given(created(), joined("ann", "viewer"))

    then_rejected(when(tenant, invite("ann", "admin")), "AlreadyMember")
    then_rejected(when(tenant, invite("olga", "viewer")), "AlreadyMember")


def test_inviting_someone_already_invited_is_refused():
    tenant = given(created(), invited("ann", "viewer"))

    then_rejected(when(tenant, invite("ann", "admin")), "AlreadyInvited")


def test_accepting_without_an_invitation_is_refused():
    then_rejected(when(given(created()), accept("ann")), "NoInvitation")


def test_accepting_twice_is_refused_as_a_duplicate_membership():
    then_rejected(when(given(created(), joined("ann", "viewer")), accept("ann")), "AlreadyMember")


def test_a_member_cannot_accept_an_invitation_for_someone_else():
    tenant = given(created(), invited("ann", "viewer"))

    then_rejected(when(tenant, accept("ann", actor="olga")), "InsufficientRole")


def test_an_operator_may_accept_on_behalf_of_the_invitee():
    tenant = given(created(), invited("ann", "viewer"))

    assert when(tenant, accept("ann", actor=OPERATOR)).accepted


# -- who may manage members -------------------------------------------------


@pytest.mark.parametrize("actor_role", ["admin", "owner"])
def test_admins_and_owners_may_invite_change_and_remove(actor_role):
    tenant = given(created(), joined("boss", actor_role), joined("ann", "viewer"))

    assert when(tenant, invite("bob", "agent", actor="boss")).accepted
    assert when(tenant, change("ann", "agent", actor="boss")).accepted
    assert when(tenant, remove("ann", actor="boss")).accepted


@pytest.mark.parametrize("actor_role", ["viewer", "agent"])
def test_viewers_and_agents_may_not_invite_change_or_remove_others(actor_role):
    tenant = given(created(), joined("pleb", actor_role), joined("ann", "viewer"))

    then_rejected(when(tenant, invite("bob", "viewer", actor="pleb")), "InsufficientRole")
    then_rejected(when(tenant, change("ann", "agent", actor="pleb")), "InsufficientRole")
    then_rejected(when(tenant, remove("ann", actor="pleb")), "InsufficientRole")
    # Not even revealing who is a member: the role check comes first.
    then_rejected(when(tenant, change("nobody", "agent", actor="pleb")), "InsufficientRole")


def test_only_an_owner_may_grant_owner():
    tenant = given(created(), joined("adam", "admin"), joined("ann", "viewer"))

    then_rejected(when(tenant, invite("bob", "owner", actor="adam")), "InsufficientRole")
    then_rejected(when(tenant, change("ann", "owner", actor="adam")), "InsufficientRole")
    assert when(tenant, change("ann", "owner", actor="olga")).accepted
    assert when(tenant, invite("bob", "owner", actor="olga")).accepted


def test_an_admin_may_not_demote_or_remove_an_owner():
    tenant = given(created(), joined("adam", "admin"), joined("otto", "owner"))

    then_rejected(when(tenant, change("otto", "viewer", actor="adam")), "InsufficientRole")
    then_rejected(when(tenant, remove("otto", actor="adam")), "InsufficientRole")


def test_an_admin_may_not_withdraw_an_owner_invitation_but_an_owner_may():
    tenant = given(created(), joined("adam", "admin"), invited("otto", "owner"))

    then_rejected(when(tenant, remove("otto", actor="adam")), "InsufficientRole")
    assert when(tenant, remove("otto", actor="olga")).accepted


def test_any_member_may_leave():
    tenant = given(created(), joined("ann", "viewer"))

    decision = when(tenant, remove("ann", actor="ann"))

    assert events_of(HUB, decision) == [("MemberRemoved", {"principal_id": "ann", "role": "viewer"})]
    assert "ann" not in decision.aggregate.members


# -- changing roles and removing ------------------------------------------


def test_changing_a_role_records_the_new_and_the_previous_role():
    tenant = given(created(), joined("ann", "viewer"))

    decision = when(tenant, change("ann", "admin"))

    assert events_of(HUB, decision) == [
        ("MemberRoleChanged", {"principal_id": "ann", "role": "admin", "previous_role": "viewer"})
    ]
    assert decision.aggregate.members["ann"] == "admin"


def test_changing_a_role_to_the_one_the_member_has_is_refused():
    then_rejected(when(given(created(), joined("ann", "agent")), change("ann", "agent")), "RoleUnchanged")


def test_changing_the_role_of_a_non_member_is_refused():
    then_rejected(when(given(created(), invited("ann", "agent")), change("ann", "admin")), "NotAMember")


def test_removing_a_non_member_is_refused():
    then_rejected(when(given(created()), remove("ann")), "NotAMember")


def test_removing_an_invitee_withdraws_the_invitation_and_it_can_no_longer_be_accepted():
    tenant = given(created(), invited("ann", "agent"))

    decision = when(tenant, remove("ann"))

    assert events_of(HUB, decision) == [("InvitationWithdrawn", {"principal_id": "ann"})]
    then_rejected(when(decision.aggregate, accept("ann")), "NoInvitation")


def test_an_invitee_may_decline_its_own_invitation():
    assert when(given(created(), invited("ann", "agent")), remove("ann", actor="ann")).accepted


def test_a_removed_member_may_be_invited_again():
    tenant = given(created(), joined("ann", "agent"), removed("ann", "agent"))

    assert "ann" not in tenant.members
    invited_again = when(tenant, invite("ann", "viewer"))
    assert when(invited_again.aggregate, accept("ann")).aggregate.members["ann"] == "viewer"


# -- the last owner --------------------------------------------------------


def test_removing_the_last_owner_is_refused():
    tenant = given(created(owner="olga"), joined("adam", "admin"))

    then_rejected(when(tenant, remove("olga")), "LastOwnerRequired")
    then_rejected(when(tenant, remove("olga", actor="olga")), "LastOwnerRequired")


def test_demoting_the_last_owner_is_refused():
    decision = when(given(created(owner="olga")), change("olga", "admin", actor="olga"))

    then_rejected(decision, "LastOwnerRequired")
    assert "last owner" in str(decision.rejection)


def test_an_owner_may_leave_or_be_demoted_once_another_owner_exists():
    tenant = given(created(owner="olga"), joined("otto", "owner"))

    assert when(tenant, change("olga", "viewer", actor="otto")).accepted
    assert when(tenant, remove("olga", actor="olga")).accepted


def test_a_pending_owner_invitation_does_not_count_as_another_owner():
    then_rejected(when(given(created(owner="olga"), invited("otto", "owner")), remove("olga")), "LastOwnerRequired")


@settings(max_examples=200, deadline=None)
@for_all(
    st.lists(
        st.tuples(
            st.sampled_from(["invite", "accept", "change", "remove"]),
            st.sampled_from(["olga", "ann", "bob", "cid"]),
            st.sampled_from(ROLES),
            st.sampled_from([OPERATOR, "olga", "ann", "bob", "cid"]),
        ),
        max_size=40,
    )
)
def test_whatever_is_asked_a_tenant_always_keeps_an_owner_and_invitees_are_never_members(steps):
    tenant = given(created(owner="olga"))
    build = {
        "invite": lambda p, r, a: invite(p, r, actor=a),
        "accept": lambda p, r, a: accept(p, actor=a),
        "change": lambda p, r, a: change(p, r, actor=a),
        "remove": lambda p, r, a: remove(p, actor=a),
    }
    codec = SnapshotCodec()
    for verb, principal, role, actor in steps:
        decision = when(tenant, build[verb](principal, role, actor))
        if decision.accepted:
            tenant, _ = codec.loads(codec.dumps(decision.aggregate, ""))  # as the processor stores it
        assert tenant.owners, "a tenant lost its last owner"
        assert not set(tenant.members) & set(tenant.invitations)
        assert set(tenant.members.values()) <= set(ROLES)


def test_the_platform_tenant_id_is_reserved():
    from hubs.tenant.commands import CreateTenant
    from hubs.tenant.hub import HUB
    from infra.hub import decide
    from schemas.contracts import CommandMeta

    meta = CommandMeta(
        command_id="c", aggregate_id="platform", tenant_id="platform", correlation_id="c", causation_id="c", actor="a"
    )
    decision = decide(HUB, None, CreateTenant(meta, name="Platform", owner_id="eve"))
    assert decision.rejection is not None and "reserved" in str(decision.rejection)


@pytest.mark.parametrize(("actor", "accepted"), [("platform", True), ("eve", False), ("operator-cli", False)])
def test_only_the_platform_creates_the_operator_team_tenant(actor, accepted):
    from hubs.tenant.commands import CreateTenant
    from hubs.tenant.hub import HUB
    from infra.hub import decide
    from schemas.contracts import CommandMeta

    meta = CommandMeta(
        command_id="c", aggregate_id="operators", tenant_id="operators", correlation_id="c", causation_id="c", actor=actor
    )
    decision = decide(HUB, None, CreateTenant(meta, name="Operators", owner_id="olga"))
    assert (decision.rejection is None) is accepted, decision.rejection
    if not accepted:
        assert "operator team" in str(decision.rejection)


# -- archiving (the compensation of CreateTenant) ----------------------------


def archive(reason: str = "onboarding compensated", **m) -> ArchiveTenant:
    return ArchiveTenant(meta(**m), reason=reason)


def test_archiving_a_tenant_records_tenant_archived_with_the_reason():
    decision = when(given(created()), archive())

    assert [type(e).__name__ for e in decision.events] == ["TenantArchived"]
    assert decision.events[0].reason == "onboarding compensated"
    assert decision.aggregate.archived


def test_an_archived_tenant_refuses_invitations_joins_role_changes_removals_and_a_second_archive():
    tenant = given(created(), invited("ann", "agent"), joined("bob", "admin"), archived())

    for command in (invite("cid", "agent"), accept("ann"), change("bob", "viewer"), remove("bob"), archive()):
        then_rejected(when(tenant, command), "TenantIsArchived")


def test_only_an_owner_member_or_a_platform_principal_may_archive_a_tenant():
    tenant = given(created(), joined("bob", "admin"))

    then_rejected(when(tenant, archive(actor="bob")), "InsufficientRole")
    assert when(tenant, archive(actor="olga")).accepted


# -- the tenant's own Odoo connection -------------------------------------------


def _connect_odoo(actor: str, **changes):
    from hubs.tenant.commands import ConnectOdoo

    fields = {
        "url": "https://acme.odoo.com",
        "database": "acme",
        "login": "bot@acme.example",
        "sealed_api_key": "sealed.v1.s1-abc.AAAA",
        "protocol": "xmlrpc",
        **changes,
    }
    return ConnectOdoo(meta(actor=actor), **fields)


def test_an_admin_saves_the_tenants_odoo_connection_with_its_key_sealed_and_saving_again_rotates_it():
    from hubs.tenant.aggregate import Tenant, handle

    tenant = Tenant.create("acme", "Acme", "olga")
    handle(tenant, _connect_odoo("olga"))
    assert tenant.odoo["sealed_api_key"] == "sealed.v1.s1-abc.AAAA" and tenant.odoo["protocol"] == "xmlrpc"
    handle(tenant, _connect_odoo("olga", sealed_api_key="sealed.v1.s2-def.BBBB", protocol="json2"))
    assert tenant.odoo["sealed_api_key"] == "sealed.v1.s2-def.BBBB" and tenant.odoo["protocol"] == "json2"


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"sealed_api_key": "clear-key"}, "never a clear key"),
        ({"protocol": "jsonrpc"}, "protocol must be one of"),
        ({"url": "ftp://acme.odoo.com"}, "url must be"),
        ({"url": "https://acme.odoo.com/"}, "url must be"),
        ({"url": "https://admin:secret@acme.odoo.com"}, "url must be"),
        ({"database": ""}, "database must be"),
    ],
)
def test_a_bad_odoo_connection_is_invalid_and_never_records_a_clear_key(changes, says):
    from hubs.tenant.aggregate import Tenant, handle

    tenant = Tenant.create("acme", "Acme", "olga")
    with pytest.raises(InvalidCommand, match=says):
        handle(tenant, _connect_odoo("olga", **changes))


def test_a_member_below_admin_cannot_save_the_odoo_connection():
    from hubs.tenant.aggregate import InsufficientRole, Tenant, handle

    tenant = Tenant.create("acme", "Acme", "olga")
    tenant._member_invited("ann", "agent")
    tenant._member_joined("ann", "agent")
    with pytest.raises(InsufficientRole):
        handle(tenant, _connect_odoo("ann"))
