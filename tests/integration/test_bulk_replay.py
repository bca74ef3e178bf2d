"""A bulk rebuild (rows folded in memory, COPYed once: infra/bulk.py) leaves every
read model's store identical to the live projector's SQL, batch by batch, on the
real PostgreSQL — for read models in row form and for those that fall back to SQL.
The histories are the aggregates' own events, through the real Avro codec."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import asyncpg
import pytest

from infra.bulk import BulkLoad
from infra.migrations import migrate
from infra.projector import _execute
from infra.replay import difference
from poseidon import bootstrap

pytestmark = pytest.mark.integration

LIVE_BATCH = 3  # small, so version guards meet rows written by earlier batches
SQL_ONLY = {"tenant"}  # read models whose statements have no row form (yet): the rebuild falls back to SQL


def wallet_history() -> list[tuple[str, dict]]:
    from hubs.wallet.commands import CaptureFunds, CreditFunds, DebitFunds, OpenWallet, ReleaseFunds, ReserveFunds
    from tests.unit.test_wallet_mapping import Story

    out = []
    for _ in range(3):
        s = Story()
        s.do(OpenWallet, currency="EUR")
        s.do(CreditFunds, amount=100)
        s.do(ReserveFunds, reservation_id="r1", amount=30)
        s.do(ReserveFunds, reservation_id="r2", amount=20)
        s.do(CaptureFunds, reservation_id="r1")
        s.do(ReleaseFunds, reservation_id="r2")
        s.do(DebitFunds, amount=7)
        out += s.records
    return out


def config_history() -> list[tuple[str, dict]]:
    from hubs.config.commands import SetConfigValue, UnsetConfigValue
    from tests.unit.test_config_mapping import Story

    s, g = Story(), Story("global", "", "bot.name")
    return [s.do(SetConfigValue, "1"), g.do(SetConfigValue, '"x"'), s.do(SetConfigValue, '{"a": 2}'), s.do(UnsetConfigValue)]


def billing_history() -> list[tuple[str, dict]]:
    from hubs.billing.commands import CancelEntitlement, ReportUsage
    from tests.unit.test_billing_mapping import PERIODS, Story

    s = Story()
    s.apply()
    s.do(ReportUsage, count=5, period_start=PERIODS[0])
    s.apply(plan="pro", quota=5000)
    s.do(ReportUsage, count=9, period_start=PERIODS[0])
    s.do(CancelEntitlement, reason="payment_failed")
    return s.records


def user_history() -> list[tuple[str, dict]]:
    from hubs.user.commands import CreateProfile, RemovePreference, SetPreference, UpdateProfile
    from tests.unit.test_user_mapping import Story

    s = Story()
    s.only(CreateProfile, display_name="Bob", email="bob@example.com", phone="+4930000000", locale="de", timezone="UTC")
    s.only(SetPreference, key="theme", value="dark")
    s.only(UpdateProfile, email="bob@work.example", phone="")
    s.only(RemovePreference, key="theme")
    s.only(SetPreference, key="theme", value="light")
    return s.records


def identity_history() -> list[tuple[str, dict]]:
    from hubs.identity.commands import ConfirmTotp, RecordLoginFailure, RevokeRefreshFamily, StartTotpEnrollment
    from tests.unit.test_identity_mapping import SEALED, Story

    s = Story().registered()
    family = str(uuid.uuid4())
    s.login(family)
    s.do(RecordLoginFailure, reason="password")
    enrollment = str(uuid.uuid4())
    s.do(StartTotpEnrollment, enrollment_id=enrollment, sealed_secret=SEALED)
    s.do(ConfirmTotp, enrollment_id=enrollment, step=123)
    s.do(RevokeRefreshFamily, family_id=family, reason="logout")
    return s.records


def app_history() -> list[tuple[str, dict]]:
    from hubs.app.commands import RegisterApp, SetSubscriptionGuards, SubscribeApp, UnsubscribeApp, subscription_id
    from tests.unit.test_app_mapping import TENANT, Story

    app_id = str(uuid.uuid4())
    publisher = Story(app_id, tenant="platform")
    publisher.only(RegisterApp, name="Bot", kind="bot", channels=["sms"], visibility="public")
    s = Story(subscription_id(TENANT, app_id))
    s.only(SubscribeApp, app_id=app_id)
    s.only(SetSubscriptionGuards, app_id=app_id, channels=["sms"], page_ids=["1"], business_hours=None)
    s.only(UnsubscribeApp, app_id=app_id)
    s.only(SubscribeApp, app_id=app_id)
    return publisher.records + s.records


def message_history() -> list[tuple[str, dict]]:
    from hubs.message.commands import CloseConversation, RecordInboundMessage, RecordOutboundMessage, UpdateDeliveryStatus
    from tests.unit.test_message_mapping import Story

    at = datetime(2026, 3, 1, 12, tzinfo=UTC)
    s = Story()
    s.start()
    s.do(RecordInboundMessage, message_id="mid.1", text="hi", received_at=at)
    s.do(RecordOutboundMessage, message_id="out-1", text="hello", in_reply_to="mid.1")
    s.do(UpdateDeliveryStatus, message_id="out-1", status="sent", reason="")
    s.do(UpdateDeliveryStatus, message_id="out-1", status="delivered", reason="")
    s.do(CloseConversation, reason="resolved")
    s.do(RecordInboundMessage, message_id="mid.2", text="one more", received_at=at)
    return s.records


def saga_history() -> list[tuple[str, dict]]:
    from tests.unit.test_saga_mapping import compensation_story

    return compensation_story()[1]


def tenant_history() -> list[tuple[str, dict]]:
    from hubs.tenant.commands import AcceptInvitation, ChangeMemberRole, CreateTenant, InviteMember, RemoveMember
    from tests.unit.test_tenant_mapping import Story

    s = Story()
    s.run(CreateTenant, name="Acme", owner_id="olga")
    s.run(InviteMember, principal_id="ann", role="agent")
    s.run(AcceptInvitation, principal_id="ann")
    s.run(ChangeMemberRole, principal_id="ann", role="admin")
    s.run(InviteMember, principal_id="bob", role="viewer")
    s.run(RemoveMember, principal_id="bob")
    return s.records


HISTORIES = {
    "wallet": wallet_history,
    "config": config_history,
    "billing": billing_history,
    "user": user_history,
    "identity": identity_history,
    "app": app_history,
    "message": message_history,
    "saga": saga_history,
    "tenant": tenant_history,
}


def test_every_read_model_has_a_history_here():
    assert set(HISTORIES) == set(bootstrap.projections())


@pytest.mark.parametrize("read_model", sorted(HISTORIES))
async def test_a_bulk_rebuild_leaves_the_same_rows_as_the_live_projector(stack, read_model):
    spec = bootstrap.projection(read_model)
    history = HISTORIES[read_model]()
    tag = f"bulk_{uuid.uuid4().hex[:8]}"
    live, bulk = f"{tag}_live", f"{tag}_bulk"
    conn = await asyncpg.connect(stack.pg_dsn)
    try:
        for schema in (live, bulk):
            await migrate(conn, schema, spec.migrations)
        batches = [history[i : i + LIVE_BATCH] for i in range(0, len(history), LIVE_BATCH)]

        await conn.execute(f'SET search_path TO "{live}"')
        for batch in batches:
            async with conn.transaction():
                await _execute(conn, [s for event in batch for s in spec.apply(*event)])

        await conn.execute(f'SET search_path TO "{bulk}"')
        load = BulkLoad(bulk)
        async with conn.transaction():
            for batch in batches:
                left = await load.fold(conn, [s for event in batch for s in spec.apply(*event)])
                await _execute(conn, left)
            await load.spill(conn)
        assert load.spilled == (read_model in SQL_ONLY)

        await conn.execute("SET search_path TO public")
        diff = await difference(conn, spec, live, bulk, samples=3)
        assert {t: (d["only_live"], d["only_shadow"]) for t, d in diff.items()} == {t: (0, 0) for t in spec.tables}, diff
        counts = {t: await conn.fetchval(f'SELECT count(*) FROM "{live}".{t}') for t in spec.tables}
        assert sum(counts.values()) > 0, "the history wrote nothing: the comparison proves nothing"
    finally:
        for schema in (live, bulk):
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await conn.close()
