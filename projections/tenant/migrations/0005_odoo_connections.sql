-- Each tenant's own Odoo connection (issue 13): where its Odoo is, which database
-- and login, the protocol, and the API key SEALED for the tenant (never clear:
-- infra/sealing.py; the Odoo spoke unseals it to call). No row: the tenant has
-- none of its own (the development default, see spokes/odoo/connections.py).
CREATE TABLE odoo_connections (
    tenant_id      text PRIMARY KEY,
    url            text NOT NULL,
    database       text NOT NULL,
    login          text NOT NULL,
    sealed_api_key text NOT NULL,
    protocol       text NOT NULL CHECK (protocol IN ('xmlrpc', 'json2')),
    version        bigint NOT NULL,  -- the tenant aggregate's version of the event
    connected_at   timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL
);
