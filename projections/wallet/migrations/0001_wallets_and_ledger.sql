-- Wallet read store: one row per wallet, one ledger row per movement (event).
CREATE TABLE wallets (
    wallet_id   uuid PRIMARY KEY,
    tenant_id   text NOT NULL,
    currency    char(3) NOT NULL,
    balance     bigint NOT NULL DEFAULT 0,
    reserved    bigint NOT NULL DEFAULT 0,
    version     bigint NOT NULL,
    opened_at   timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);
CREATE INDEX wallets_tenant ON wallets (tenant_id);

CREATE TABLE ledger (
    wallet_id       uuid NOT NULL,
    version         bigint NOT NULL,
    tenant_id       text NOT NULL,
    kind            text NOT NULL CHECK (kind IN ('credit', 'debit', 'reserve', 'release', 'capture')),
    amount          bigint NOT NULL,
    balance_delta   bigint NOT NULL,
    reserved_delta  bigint NOT NULL,
    entry_id        text NOT NULL DEFAULT '',
    reservation_id  text NOT NULL DEFAULT '',
    reference       text NOT NULL DEFAULT '',
    event_id        uuid NOT NULL UNIQUE,
    correlation_id  text NOT NULL,
    occurred_at     timestamptz NOT NULL,
    PRIMARY KEY (wallet_id, version)
);
