-- A subscription's bot connection (issue 13): the tenant's own Botpress Chat
-- integration — its webhook id, and its webhook secret SEALED for the tenant and
-- app (never clear: infra/sealing.py). Empty: no bot of its own (the development
-- default bot, see spokes/botpress/bots.py).
ALTER TABLE subscriptions
    ADD COLUMN bot_webhook_id text NOT NULL DEFAULT '',
    ADD COLUMN bot_sealed_secret text NOT NULL DEFAULT '';
