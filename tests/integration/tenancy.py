"""Real tenant memberships for any hub's integration tests: `member_of` makes a
principal a member of a tenant with a role through the Tenant hub's own commands
(its processor and projector run in the test's platform), and returns once the
membership is in the read store every gRPC role check reads.

    await member_of(platform, "tenant-a", alice, "admin")
    stub = ...(channel(platform.settings, "<hub>", bearer(mint_token(platform.settings, alice))))
"""

from __future__ import annotations

import asyncio
import uuid

from hubs.tenant.aggregate import ROLES
from hubs.tenant.commands import AcceptInvitation, ChangeMemberRole, CreateTenant, InviteMember
from infra.command_client import CommandClient, CommandResult, new_meta
from poseidon import bootstrap
from tests.harness import Platform, eventually, fetch

ACTOR = "tenancy-helper"
"""Not a member of any tenant: the Tenant aggregate treats it as an operator
whose authority was checked upstream, like the CLI."""
COMMAND_TIMEOUT = 60.0  # a fresh processor first waits for its partitions


class MembershipSetupFailed(AssertionError):
    """A Tenant command the helper needed was rejected for a reason it cannot fix."""


def synthetic_owner(tenant_id: str) -> str:
    """The owner `member_of` gives a tenant it creates for a non-owner member."""
    return f"owner-of-{tenant_id}"


async def member_of(platform: Platform, tenant_id: str, principal_id: str, role: str) -> None:
    """Make `principal_id` a member of `tenant_id` with exactly `role`, creating
    the tenant if needed (its owner: `principal_id` when role is owner, else
    `synthetic_owner(tenant_id)`), and wait until the read store shows it.
    Idempotent: calling it again with another role changes the role."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, not {role!r}")
    await start_tenant_hub(platform)
    settings = platform.settings
    owner = principal_id if role == "owner" else synthetic_owner(tenant_id)
    async with CommandClient(settings, bootstrap.codec(settings), [bootstrap.hub("tenant")]) as client:
        # One key, one partition: the processor decides these in this order, so
        # they can be in flight together (one commit interval instead of three).
        created, invited, accepted = await _send_all(
            client,
            CreateTenant(_meta(tenant_id), name=f"Tenant {tenant_id}", owner_id=owner),
            InviteMember(_meta(tenant_id), principal_id=principal_id, role=role),
            AcceptInvitation(_meta(tenant_id), principal_id=principal_id),
        )
        _expect(created, "CreateTenant", "AggregateAlreadyExists")
        if not (created.accepted and owner == principal_id):
            _expect(invited, "InviteMember", "AlreadyMember", "AlreadyInvited")
            _expect(accepted, "AcceptInvitation", "AlreadyMember")
            if not (invited.accepted and accepted.accepted):
                # Already a member, or invited earlier with some role: set the role asked for.
                await _set_role(client, tenant_id, principal_id, role)
    await wait_for_role(platform, tenant_id, principal_id, role)


async def start_tenant_hub(platform: Platform) -> None:
    """Start the Tenant processor and projector in `platform` unless they run."""
    starting = []
    for role in ("processor", "projector"):
        name = f"tenant-{role}"
        proc = platform.procs.get(name)
        # No await before start(): concurrent callers see each other's processes.
        if proc is None or proc.popen is None or proc.popen.poll() is not None:
            platform.start(role, "tenant", wait=False)
            starting.append(name)
    await asyncio.gather(*(asyncio.to_thread(platform.wait_healthy, name) for name in starting))


async def wait_for_role(platform: Platform, tenant_id: str, principal_id: str, role: str | None, timeout: float = 30.0) -> None:
    """Wait until the Tenant read store shows `role` (None: no membership)."""
    schema = platform.settings.pg_schema("tenant")

    async def projected() -> bool:
        rows = await fetch(
            platform.settings,
            schema,
            "SELECT role FROM memberships WHERE tenant_id = $1 AND principal_id = $2",
            tenant_id,
            principal_id,
        )
        return (rows[0]["role"] if rows else None) == role

    await eventually(projected, timeout=timeout)


async def _set_role(client: CommandClient, tenant_id: str, principal_id: str, role: str) -> None:
    [changed] = await _send_all(client, ChangeMemberRole(_meta(tenant_id), principal_id=principal_id, role=role))
    if changed.rejection == "LastOwnerRequired":
        # Demoting the only owner: give the tenant its synthetic owner first.
        await _ensure_owner(client, tenant_id, synthetic_owner(tenant_id))
        [changed] = await _send_all(client, ChangeMemberRole(_meta(tenant_id), principal_id=principal_id, role=role))
    _expect(changed, "ChangeMemberRole", "RoleUnchanged")


async def _ensure_owner(client: CommandClient, tenant_id: str, owner: str) -> None:
    invited, accepted, promoted = await _send_all(
        client,
        InviteMember(_meta(tenant_id), principal_id=owner, role="owner"),
        AcceptInvitation(_meta(tenant_id), principal_id=owner),
        ChangeMemberRole(_meta(tenant_id), principal_id=owner, role="owner"),
    )
    _expect(invited, "InviteMember", "AlreadyMember", "AlreadyInvited")
    _expect(accepted, "AcceptInvitation", "AlreadyMember")
    _expect(promoted, "ChangeMemberRole", "RoleUnchanged")


async def _send_all(client: CommandClient, *commands) -> list[CommandResult]:
    futures = [await client.submit(command) for command in commands]
    try:
        return list(await asyncio.wait_for(asyncio.gather(*futures), COMMAND_TIMEOUT))
    except TimeoutError:
        raise MembershipSetupFailed(f"no Tenant command result in {COMMAND_TIMEOUT}s: is the tenant processor up?") from None


def _meta(tenant_id: str):
    return new_meta(tenant_id, tenant_id, actor=ACTOR, correlation_id=f"tenancy-{uuid.uuid4()}")


def _expect(result: CommandResult, command: str, *tolerated: str) -> None:
    if not result.accepted and result.rejection not in tolerated:
        raise MembershipSetupFailed(f"{command} was rejected: {result.rejection}: {result.reason}")
