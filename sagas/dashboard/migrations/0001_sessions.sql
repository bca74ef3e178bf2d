-- The dashboard's server-side sessions: a cookie carries only a random session id,
-- so logging out (deleting the row) ends it for every dashboard instance at once.
CREATE TABLE sessions (
    session_key       bytea PRIMARY KEY,      -- HMAC of the session id; the id itself is never stored
    principal_id      text NOT NULL,
    token_id          text NOT NULL,          -- the access token's jti
    sealed_token      bytea NOT NULL,         -- AES-GCM under a key derived from the session id: opens only with the cookie
    identity_session  text NOT NULL DEFAULT '', -- the Identity hub's refresh family, revoked at logout ('' for a pasted token)
    created_at        timestamptz NOT NULL DEFAULT now(),
    expires_at        timestamptz NOT NULL    -- the access token's expiry
);
CREATE INDEX sessions_by_token ON sessions (token_id);
CREATE INDEX sessions_by_expiry ON sessions (expires_at);

-- Access tokens logged out of: refused at login until they expire (a pasted token
-- stays a valid JWT elsewhere; the dashboard no longer takes it).
CREATE TABLE refused_tokens (
    token_id    text PRIMARY KEY,
    expires_at  timestamptz NOT NULL,
    refused_at  timestamptz NOT NULL DEFAULT now()
);
