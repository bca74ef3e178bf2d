-- Config read store: the current value of every key in every scope (a row stays,
-- with a NULL value, after an unset: its version keeps replays idempotent), and
-- every change ever made, from which any past configuration is reconstructed.
-- tenant_id is the tenant for tenant scope and 'platform' for global/environment.
CREATE TABLE config_values (
    entry_id        uuid PRIMARY KEY,
    tenant_id       text NOT NULL,
    scope_kind      text NOT NULL CHECK (scope_kind IN ('global', 'environment', 'tenant')),
    scope_id        text NOT NULL,
    key             text COLLATE "C" NOT NULL,
    value_json      text,
    version         bigint NOT NULL,
    changed_at      timestamptz NOT NULL,
    changed_by      text NOT NULL,
    UNIQUE (tenant_id, scope_kind, scope_id, key)
);
CREATE INDEX config_values_key ON config_values (key);

CREATE TABLE config_history (
    entry_id        uuid NOT NULL,
    version         bigint NOT NULL,
    tenant_id       text NOT NULL,
    scope_kind      text NOT NULL CHECK (scope_kind IN ('global', 'environment', 'tenant')),
    scope_id        text NOT NULL,
    key             text COLLATE "C" NOT NULL,
    change          text NOT NULL CHECK (change IN ('set', 'unset')),
    value_json      text,
    changed_at      timestamptz NOT NULL,
    changed_by      text NOT NULL,
    event_id        uuid NOT NULL UNIQUE,
    correlation_id  text NOT NULL,
    PRIMARY KEY (entry_id, version),
    CHECK ((change = 'set') = (value_json IS NOT NULL))
);
CREATE INDEX config_history_key ON config_history (key, tenant_id, scope_kind, scope_id, changed_at);
