-- App read store: registered apps, and tenants' subscriptions with their guards.
CREATE TABLE apps (
    app_id       uuid PRIMARY KEY,
    tenant_id    text NOT NULL,  -- the publisher; 'platform' for first-party apps
    name         text NOT NULL,
    kind         text NOT NULL CHECK (kind IN ('bot', 'integration')),
    channels     text[] NOT NULL,
    visibility   text NOT NULL CHECK (visibility IN ('private', 'public')),
    version      bigint NOT NULL,
    registered_at timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL
);
CREATE INDEX apps_tenant ON apps (tenant_id, app_id);
CREATE INDEX apps_public ON apps (app_id) WHERE visibility = 'public';

CREATE TABLE subscriptions (
    tenant_id       text NOT NULL,
    app_id          uuid NOT NULL,
    subscription_id text NOT NULL UNIQUE,  -- the aggregate id, '<tenant_id>/<app_id>'
    active          boolean NOT NULL,
    channels        text[] NOT NULL DEFAULT '{}',  -- empty: every channel the app supports
    page_ids        text[] NOT NULL DEFAULT '{}',  -- empty: every page
    business_hours  jsonb,                         -- {"timezone", "windows": [{"day", "opens", "closes"}]}; NULL: any time
    version         bigint NOT NULL,
    subscribed_at   timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, app_id)
);
