-- Proof of control and credentials of a channel account (issue 13): how its
-- tenant proved control (facebook_login, or '' when provisioned by the platform),
-- its access token SEALED for the tenant and account (never clear: infra/sealing.py;
-- the Facebook spoke unseals it to send), and whether the outside system refused
-- that token (needs_reauthorization, with the answer as reason) until the tenant
-- proves control again.
ALTER TABLE channel_accounts
    ADD COLUMN proof text NOT NULL DEFAULT '',
    ADD COLUMN sealed_token text NOT NULL DEFAULT '',
    ADD COLUMN needs_reauthorization boolean NOT NULL DEFAULT false,
    ADD COLUMN reauthorization_reason text NOT NULL DEFAULT '';
