"""The tenant onboarding saga, as pure data: create the tenant → open its wallet →
set its default configuration → subscribe it to the default app; on failure the
done steps are compensated in reverse (UnsubscribeApp, UnsetConfigValue,
CloseWallet, ArchiveTenant).

Owner membership: CreateTenant makes `owner_id` the tenant's first owner in the
same command (TenantCreated + MemberJoined owner), so there is no separate
membership step to run or compensate — archiving the tenant closes it to
membership changes.

Input (StartSaga.input_json): {"tenant_id", "name", "owner_id", "currency",
"default_app_id", "config_key", "config_value_json"}; the saga's tenant is the new
tenant. The wallet id is derived from the saga id (`SagaView.derived_id("wallet")`),
so every attempt and every replay address the same wallet."""

from __future__ import annotations

from hubs.app.commands import SubscribeApp, UnsubscribeApp, subscription_id
from hubs.config.commands import SetConfigValue, UnsetConfigValue
from hubs.saga.definition import SagaDefinition, SagaView, Step
from hubs.tenant.commands import ArchiveTenant, CreateTenant
from hubs.wallet.commands import CloseWallet, OpenWallet

NAME = "tenant_onboarding"
DEFAULT_CONFIG_KEY = "onboarding.welcome_message"
DEFAULT_CONFIG_VALUE_JSON = '"Welcome!"'


def tenant_id(s: SagaView) -> str:
    return s.input["tenant_id"]


def wallet_id(s: SagaView) -> str:
    return s.derived_id("wallet")


def config_key(s: SagaView) -> str:
    return s.input.get("config_key") or DEFAULT_CONFIG_KEY


def config_entry_id(s: SagaView) -> str:
    from hubs.config.aggregate import entry_id  # pure; kept local to make the dependency explicit

    return entry_id("tenant", tenant_id(s), config_key(s))


def create_tenant(s: SagaView) -> CreateTenant:
    return CreateTenant(meta=s.meta(tenant_id(s), tenant_id(s)), name=s.input["name"], owner_id=s.input["owner_id"])


def archive_tenant(s: SagaView) -> ArchiveTenant:
    return ArchiveTenant(meta=s.meta(tenant_id(s), tenant_id(s)), reason="onboarding compensated")


def open_wallet(s: SagaView) -> OpenWallet:
    return OpenWallet(meta=s.meta(wallet_id(s), tenant_id(s)), currency=s.input.get("currency", "EUR"))


def close_wallet(s: SagaView) -> CloseWallet:
    return CloseWallet(meta=s.meta(wallet_id(s), tenant_id(s)), reason="onboarding compensated")


def set_default_config(s: SagaView) -> SetConfigValue:
    return SetConfigValue(
        meta=s.meta(config_entry_id(s), tenant_id(s)),
        scope_kind="tenant",
        scope_id=tenant_id(s),
        key=config_key(s),
        value_json=s.input.get("config_value_json") or DEFAULT_CONFIG_VALUE_JSON,
    )


def unset_default_config(s: SagaView) -> UnsetConfigValue:
    return UnsetConfigValue(
        meta=s.meta(config_entry_id(s), tenant_id(s)), scope_kind="tenant", scope_id=tenant_id(s), key=config_key(s)
    )


def subscribe_default_app(s: SagaView) -> SubscribeApp:
    app_id = s.input["default_app_id"]
    return SubscribeApp(meta=s.meta(subscription_id(tenant_id(s), app_id), tenant_id(s)), app_id=app_id)


def unsubscribe_default_app(s: SagaView) -> UnsubscribeApp:
    app_id = s.input["default_app_id"]
    return UnsubscribeApp(meta=s.meta(subscription_id(tenant_id(s), app_id), tenant_id(s)), app_id=app_id)


TENANT_ONBOARDING = SagaDefinition(
    name=NAME,
    steps=(
        Step("create_tenant", create_tenant, archive_tenant, max_attempts=3, deadline_s=30),
        Step("open_wallet", open_wallet, close_wallet, max_attempts=3, deadline_s=30),
        Step("default_config", set_default_config, unset_default_config, max_attempts=3, deadline_s=30),
        Step("subscribe_default_app", subscribe_default_app, unsubscribe_default_app, max_attempts=3, deadline_s=30),
    ),
)
