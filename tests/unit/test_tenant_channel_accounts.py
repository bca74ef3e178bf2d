"""The channel registry's rules as given / when / then over `infra.hub.decide` (the
step the Tenant processor runs): connecting, reconnecting and disconnecting a
channel account, global uniqueness through the shared tenant-ownership rule,
canonical ids, proof of control and sealed tokens (rotation on reconnect, a move
to a tenant that proved control recorded under both tenants, "needs
reauthorization"), and the read model's statements for its events. No broker."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from hubs.tenant.aggregate import ChannelAccount, Tenant
from hubs.tenant.commands import (
    ConnectChannel,
    DisconnectChannel,
    InviteMember,
    MoveChannel,
    RequireChannelReauthorization,
    channel_account_id,
)
from hubs.tenant.hub import HUB
from infra.hub import Decision, SnapshotCodec, event_payload
from projections.tenant.mapping import CHANNEL, CHANNEL_STATE, apply
from schemas.codec import Catalog, Codec
from schemas.contracts import CommandMeta
from tests.unit.given_when_then import Fact, Hub, events_of, given, happened, schema_fields, then_rejected

CODEC = Codec(Catalog.load())
PAGE = "104857600123"
ACCOUNT = channel_account_id("facebook", PAGE)


def meta(aggregate_id: str = ACCOUNT, tenant_id: str = "acme", actor: str = "operator-cli") -> CommandMeta:
    command_id = str(uuid.uuid4())
    return CommandMeta(command_id, aggregate_id, tenant_id, f"corr-{command_id}", command_id, actor)


SEALED = "sealed.v1.k1.c2VhbGVkLXBhZ2UtdG9rZW4"
ROTATED = "sealed.v1.k1.cm90YXRlZC1wYWdlLXRva2Vu"


def connect(
    tenant_id: str = "acme",
    channel: str = "facebook",
    account_id: str = PAGE,
    aggregate_id: str | None = None,
    proof: str = "",
    sealed_token: str = "",
):
    aggregate_id = channel_account_id(channel, account_id) if aggregate_id is None else aggregate_id
    return ConnectChannel(
        meta(aggregate_id, tenant_id), channel=channel, account_id=account_id, proof=proof, sealed_token=sealed_token
    )


def connect_with_proof(tenant_id: str = "acme", sealed_token: str = SEALED):
    return connect(tenant_id, proof="facebook_login", sealed_token=sealed_token)


def move(to_tenant_id: str = "globex", owner: str = "acme", proof: str = "facebook_login"):
    return MoveChannel(meta(ACCOUNT, owner, actor="globex-admin"), to_tenant_id=to_tenant_id, proof=proof)


def require_reauthorization(tenant_id: str = "acme", reason: str = "Graph API HTTP 400, error 190/463: Session has expired"):
    return RequireChannelReauthorization(meta(ACCOUNT, tenant_id, actor="spoke:facebook"), reason=reason)


def disconnect(tenant_id: str = "acme", reason: str = "", aggregate_id: str = ACCOUNT):
    return DisconnectChannel(meta(aggregate_id, tenant_id), reason=reason)


# -- what happened to the account, for `given` --


def connected(
    tenant_id: str = "acme", channel: str = "facebook", account_id: str = PAGE, proof: str = "", sealed_token: str = ""
) -> Fact:
    return happened(
        ChannelAccount.ChannelConnected,
        channel_account_id=channel_account_id(channel, account_id),
        tenant_id=tenant_id,
        channel=channel,
        account_id=account_id,
        proof=proof,
        sealed_token=sealed_token,
    )


def disconnected(reason: str = "", channel: str = "facebook", account_id: str = PAGE) -> Fact:
    return happened(ChannelAccount.ChannelDisconnected, channel=channel, account_id=account_id, reason=reason)


when = Hub(HUB).when


# -- connecting ----------------------------------------------------------------


def test_connecting_a_channel_account_records_channel_connected_owned_by_the_tenant():
    decision = when(None, connect())

    assert events_of(HUB, decision) == [
        ("ChannelConnected", {"channel": "facebook", "account_id": PAGE, "proof": "", "sealed_token": ""})
    ]
    account = decision.aggregate
    assert isinstance(account, ChannelAccount)
    assert (account.tenant_id, account.channel, account.account_id, account.connected) == ("acme", "facebook", PAGE, True)
    assert decision.events[0].originator_id == ChannelAccount.create_id(ACCOUNT)


def test_the_aggregate_id_of_a_channel_account_is_channel_slash_account_and_its_uuid_derives_from_it_alone():
    assert channel_account_id("facebook", PAGE) == f"facebook/{PAGE}"
    assert ChannelAccount.create_id(ACCOUNT) == ChannelAccount.create_id(f"facebook/{PAGE}")
    assert ChannelAccount.create_id(ACCOUNT) != ChannelAccount.create_id(channel_account_id("telegram", PAGE))
    # Never the UUID of a tenant, whatever the names: the two id spaces cannot meet.
    assert ChannelAccount.create_id(ACCOUNT) != Tenant.create_id(ACCOUNT)


def test_a_second_tenant_connecting_the_same_account_is_refused_by_the_tenant_ownership_rule():
    account = given(connected("acme"))

    decision = when(account, connect("globex"))

    then_rejected(decision, "TenantMismatch")
    assert "globex" in str(decision.rejection) and "acme" not in str(decision.rejection)


def test_the_same_page_on_another_channel_is_another_account():
    given(connected("acme", "facebook"))

    assert when(None, connect("globex", "telegram")).accepted


def test_connecting_an_account_already_connected_to_the_tenant_is_refused():
    then_rejected(when(given(connected()), connect()), "AlreadyConnected")


@pytest.mark.parametrize(
    "channel, account_id",
    [("Facebook", PAGE), ("face book", PAGE), ("", PAGE), ("x" * 33, PAGE), ("facebook/x", PAGE), ("facebook", ""),
     ("facebook", "a/b"), ("facebook", "a b"), ("facebook", "x" * 129), ("facebook", "pagé")],
)  # fmt: skip
def test_an_unknown_channel_or_a_malformed_account_id_is_an_invalid_command(channel, account_id):
    then_rejected(
        when(None, connect(channel=channel, account_id=account_id, aggregate_id=f"{channel}/{account_id}")), "InvalidCommand"
    )


@pytest.mark.parametrize("aggregate_id", ["facebook/104857600124", "telegram/104857600123", "104857600123", "FACEBOOK/1"])
def test_an_aggregate_id_other_than_the_canonical_channel_slash_account_is_refused(aggregate_id):
    decision = when(None, connect(aggregate_id=aggregate_id))

    then_rejected(decision, "InvalidCommand")
    assert ACCOUNT in str(decision.rejection)


@pytest.mark.parametrize("tenant_id", ["platform", "system", "global", "Acme", ""])
def test_a_reserved_or_malformed_tenant_cannot_connect_a_channel_account(tenant_id):
    then_rejected(when(None, connect(tenant_id)), "InvalidCommand")


# -- disconnecting and reconnecting -------------------------------------------------


def test_disconnecting_records_the_reason_and_reconnecting_records_channel_reconnected():
    account = given(connected())

    disconnected = when(account, disconnect(reason="page unpublished"))
    assert events_of(HUB, disconnected) == [
        ("ChannelDisconnected", {"channel": "facebook", "account_id": PAGE, "reason": "page unpublished"})
    ]
    assert disconnected.aggregate.connected is False

    reconnected = when(disconnected.aggregate, connect())
    assert events_of(HUB, reconnected) == [
        ("ChannelReconnected", {"channel": "facebook", "account_id": PAGE, "proof": "", "sealed_token": ""})
    ]
    assert reconnected.aggregate.connected is True and reconnected.aggregate.version == 3


def test_disconnecting_twice_is_refused():
    then_rejected(when(given(connected(), disconnected()), disconnect()), "NotConnected")


def test_disconnecting_an_account_nobody_connected_is_aggregate_not_found():
    then_rejected(when(None, disconnect()), "AggregateNotFound")


def test_another_tenant_can_neither_disconnect_nor_take_over_a_disconnected_account():
    account = given(connected("acme"), disconnected())

    then_rejected(when(account, disconnect("globex")), "TenantMismatch")
    then_rejected(when(account, connect("globex")), "TenantMismatch")
    assert when(account, connect("acme")).accepted


def test_a_reason_longer_than_200_characters_is_refused():
    then_rejected(when(given(connected()), disconnect(reason="x" * 201)), "InvalidCommand")


# -- the two aggregates of the hub never mix -----------------------------------------


def test_a_membership_command_on_a_channel_account_is_refused_not_crashed():
    account = given(connected("acme"))

    decision = when(account, InviteMember(meta(ACCOUNT, "acme"), principal_id="ann", role="agent"))

    then_rejected(decision, "InvalidCommand")


def test_a_channel_command_on_a_tenant_is_refused_not_crashed():
    tenant = given(
        happened(Tenant.TenantCreated, tenant_id="acme", name="Acme"),
        happened(Tenant.MemberJoined, principal_id="olga", role="owner"),
    )

    then_rejected(when(tenant, DisconnectChannel(meta("acme", "acme"))), "InvalidCommand")


def test_a_channel_account_survives_the_processors_snapshot_as_its_own_class():
    codec = SnapshotCodec()
    account = given(connected(), disconnected(reason="r"))

    restored, last_hash = codec.loads(codec.dumps(account, "abc"))

    assert isinstance(restored, ChannelAccount) and last_hash == "abc"
    assert (restored.tenant_id, restored.channel, restored.account_id, restored.connected, restored.version) == (
        "acme",
        "facebook",
        PAGE,
        False,
        2,
    )
    assert when(restored, connect()).accepted


# -- the read model ------------------------------------------------------------


def records(decision: Decision, tenant_id: str = "acme") -> list[tuple[str, dict]]:
    """The decision's events as the projector receives them (through the real codec)."""
    out = []
    for event in decision.events:
        name = HUB.event_name(event)
        record = {
            "envelope": {
                "event_id": str(uuid.uuid4()),
                "event_type": name,
                "aggregate_id": ACCOUNT,
                "aggregate_version": event.originator_version,
                "tenant_id": tenant_id,
                "correlation_id": "c",
                "causation_id": "c",
                "occurred_at": event.timestamp,
                "actor": "operator-cli",
                "previous_hash": "",
            },
            **event_payload(event, schema_fields(HUB, event)),
        }
        decoded = CODEC.decode(CODEC.encode(name, record))
        out.append((decoded.name, decoded.record))
    return out


def test_every_channel_event_is_one_version_guarded_upsert_of_the_accounts_row():
    connected = when(None, connect())
    disconnected = when(connected.aggregate, disconnect())
    reconnected = when(disconnected.aggregate, connect())
    rotated = when(reconnected.aggregate, connect_with_proof())
    invalidated = when(rotated.aggregate, require_reauthorization())
    moved = when(invalidated.aggregate, move())
    stream = records(connected) + records(disconnected) + records(reconnected)
    stream += records(rotated) + records(invalidated) + records(moved)

    statements = [s for name, record in stream for s in apply(name, record)]

    assert sorted({name for name, _ in stream}) == sorted(
        n for n in CODEC.catalog.names() if n.startswith("poseidon.tenant.Channel")
    ), "every channel event schema is covered"
    assert [(s.sql, s.phase) for s in statements] == [(CHANNEL_STATE, CHANNEL)] * 6
    # (channel, account, owner, connected, version) + (proof, token, needs reauthorization, keep token, keep reauth)
    assert [(*s.args[:5], *s.args[6:9], *s.args[10:]) for s in statements] == [
        ("facebook", PAGE, "acme", True, 1, "", "", False, False, False),
        ("facebook", PAGE, "acme", False, 2, "", "", False, True, True),
        ("facebook", PAGE, "acme", True, 3, "", "", False, True, True),
        ("facebook", PAGE, "acme", True, 4, "facebook_login", SEALED, False, False, False),
        ("facebook", PAGE, "acme", True, 5, "", "", True, True, False),
        ("facebook", PAGE, "globex", False, 6, "", "", False, False, False),
    ]
    assert all(isinstance(s.args[5], datetime) and s.args[5].tzinfo is not None for s in statements)
    assert "WHERE channel_accounts.version < EXCLUDED.version" in CHANNEL_STATE


def test_the_upsert_keys_on_channel_and_account_and_never_needs_the_tenant_row():
    assert "ON CONFLICT (channel, account_id)" in CHANNEL_STATE
    assert "tenants" not in CHANNEL_STATE
    record = {"envelope": {"tenant_id": "acme", "aggregate_version": 1, "occurred_at": datetime.now(UTC)}}
    record.update(channel="facebook", account_id=PAGE)
    assert apply("poseidon.tenant.ChannelConnected", record)[0].args[2] == "acme"


# -- proof of control, sealed tokens, moves, reauthorization --------------------------


def test_connecting_a_page_with_proof_records_the_proof_and_the_sealed_token():
    decision = when(None, connect_with_proof())

    assert events_of(HUB, decision) == [
        ("ChannelConnected", {"channel": "facebook", "account_id": PAGE, "proof": "facebook_login", "sealed_token": SEALED})
    ]
    assert (decision.aggregate.proof, decision.aggregate.sealed_token) == ("facebook_login", SEALED)


def test_a_facebook_token_without_proof_is_refused_proof_required():
    decision = when(None, connect(sealed_token=SEALED))

    then_rejected(decision, "ProofRequired")
    assert "connect flow" in str(decision.rejection)


@pytest.mark.parametrize("token", ["EAAGm0PX4ZCpsBAClearPageToken", "sealed.v2.k.x", "sealed.v1." + "x" * 5000])
def test_a_clear_or_malformed_token_is_never_recorded(token):
    then_rejected(when(None, connect_with_proof(sealed_token=token)), "InvalidCommand")


def test_a_proof_without_its_token_or_an_unknown_proof_is_an_invalid_command():
    then_rejected(when(None, connect(proof="facebook_login")), "InvalidCommand")
    then_rejected(when(None, connect(proof="trust-me", sealed_token=SEALED)), "InvalidCommand")


def test_connecting_again_with_proof_rotates_the_token_even_while_connected():
    account = given(connected(proof="facebook_login", sealed_token=SEALED))

    decision = when(account, connect_with_proof(sealed_token=ROTATED))

    assert events_of(HUB, decision) == [
        ("ChannelReconnected", {"channel": "facebook", "account_id": PAGE, "proof": "facebook_login", "sealed_token": ROTATED})
    ]
    assert decision.aggregate.sealed_token == ROTATED and decision.aggregate.connected


def test_another_tenant_with_proof_still_cannot_connect_an_owned_page_directly():
    # Taking a page from its owner is a move, sent under the owner (recorded there).
    then_rejected(when(given(connected("acme")), connect_with_proof("globex")), "TenantMismatch")


def test_a_move_with_proof_is_recorded_under_the_old_owner_and_the_new_owner_connects_with_its_own_token():
    account = given(connected("acme", proof="facebook_login", sealed_token=SEALED))

    moved = when(account, move("globex"))

    assert events_of(HUB, moved) == [
        (
            "ChannelMoved",
            {
                "channel": "facebook",
                "account_id": PAGE,
                "from_tenant_id": "acme",
                "to_tenant_id": "globex",
                "proof": "facebook_login",
            },
        )
    ]
    assert moved.events[0].originator_id == ChannelAccount.create_id(ACCOUNT)
    account = moved.aggregate
    assert (account.tenant_id, account.connected, account.sealed_token) == ("globex", False, "")
    # The old owner lost it; the new one connects it with its proof (recorded under it).
    then_rejected(when(account, connect_with_proof("acme")), "TenantMismatch")
    arrived = when(account, connect_with_proof("globex", sealed_token=ROTATED))
    assert events_of(HUB, arrived)[0][0] == "ChannelReconnected"
    assert (arrived.aggregate.tenant_id, arrived.aggregate.connected, arrived.aggregate.sealed_token) == (
        "globex",
        True,
        ROTATED,
    )


def test_a_move_without_proof_is_refused_proof_required():
    then_rejected(when(given(connected("acme")), move(proof="")), "ProofRequired")


def test_a_move_sent_under_another_tenant_than_the_owner_is_refused():
    then_rejected(when(given(connected("acme")), move("globex", owner="globex")), "TenantMismatch")


@pytest.mark.parametrize("to_tenant", ["acme", "platform", "Not A Slug"])
def test_a_move_to_the_owner_itself_or_to_a_reserved_or_malformed_tenant_is_invalid(to_tenant):
    then_rejected(when(given(connected("acme")), move(to_tenant)), "InvalidCommand")


def test_an_invalidated_token_puts_the_channel_into_needs_reauthorization_once():
    account = given(connected(proof="facebook_login", sealed_token=SEALED))

    decision = when(account, require_reauthorization())

    assert events_of(HUB, decision) == [
        (
            "ChannelReauthorizationRequired",
            {"channel": "facebook", "account_id": PAGE, "reason": "Graph API HTTP 400, error 190/463: Session has expired"},
        )
    ]
    assert decision.aggregate.needs_reauthorization is True
    then_rejected(when(decision.aggregate, require_reauthorization()), "ReauthorizationAlreadyRequired")


def test_only_the_owner_is_told_of_an_invalid_token_and_only_while_connected():
    then_rejected(when(given(connected("acme")), require_reauthorization("globex")), "TenantMismatch")
    then_rejected(when(given(connected(), disconnected()), require_reauthorization()), "NotConnected")
    then_rejected(when(None, require_reauthorization()), "AggregateNotFound")


def test_reconnecting_with_proof_ends_the_needed_reauthorization():
    invalidated = when(given(connected(proof="facebook_login", sealed_token=SEALED)), require_reauthorization())

    again = when(invalidated.aggregate, connect_with_proof(sealed_token=ROTATED))

    assert again.accepted and again.aggregate.needs_reauthorization is False
    assert again.aggregate.sealed_token == ROTATED


def test_an_account_snapshotted_before_proofs_existed_restores_without_them():
    codec = SnapshotCodec()
    account = given(connected())
    for name in ("proof", "sealed_token", "needs_reauthorization"):
        account.__dict__.pop(name, None)

    restored, _ = codec.loads(codec.dumps(account, ""))

    assert (restored.proof, restored.sealed_token, restored.needs_reauthorization) == ("", "", False)
