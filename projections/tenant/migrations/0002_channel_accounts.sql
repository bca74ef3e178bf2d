-- The channel registry: which tenant owns a channel account (a Facebook page, …)
-- and whether it is connected. The Message Hub's router resolves an inbound
-- item's page id here (gRPC ResolveChannel). One row per account on the whole
-- platform: the key has no tenant, because the account belongs to one tenant.
CREATE TABLE channel_accounts (
    channel       text NOT NULL,
    account_id    text NOT NULL,
    tenant_id     text NOT NULL,
    connected     boolean NOT NULL,
    version       bigint NOT NULL,
    connected_at  timestamptz NOT NULL,  -- the last (re)connection
    updated_at    timestamptz NOT NULL,
    PRIMARY KEY (channel, account_id)
);
-- "Which accounts has my tenant connected?" reads by tenant.
CREATE INDEX channel_accounts_tenant ON channel_accounts (tenant_id, channel, account_id);
