-- Billing read store: one row per tenant, the entitlement as the billing provider last stated it.
-- "Remaining" is not stored: queries derive it from message_quota, the usage columns and the clock.
CREATE TABLE entitlements (
    tenant_id       text PRIMARY KEY,
    entitlement_id  uuid NOT NULL UNIQUE,
    plan            text NOT NULL,
    message_quota   bigint NOT NULL CHECK (message_quota >= 0),
    period_start    timestamptz NOT NULL,
    period_end      timestamptz NOT NULL,
    features        text[] NOT NULL,
    status          text NOT NULL CHECK (status IN ('active', 'cancelled')),
    cancel_reason   text NOT NULL DEFAULT '',
    -- Usage the provider reported for the period starting at period_start.
    reported_used   bigint NOT NULL DEFAULT 0,
    version         bigint NOT NULL,
    granted_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL
);
