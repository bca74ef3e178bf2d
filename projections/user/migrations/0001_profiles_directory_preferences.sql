-- User read store. The rule for personal data (display name, email, phone):
--   profiles           holds them in clear; read only for the principal itself and
--                      the tenant's admins and owners (GetProfile, ListProfiles as admin).
--   profile_directory  the same profiles with email and phone masked at projection
--                      time (hubs/user/pii.py); everything agents and viewers see
--                      comes from here, so their queries cannot touch a clear value.
--   preferences        allow-listed keys and values, no personal data.
CREATE TABLE profiles (
    profile_id    uuid PRIMARY KEY,
    tenant_id     text NOT NULL,
    principal_id  uuid NOT NULL,
    display_name  text NOT NULL,
    email         text NOT NULL,
    phone         text NOT NULL DEFAULT '',
    locale        text NOT NULL,
    timezone      text NOT NULL,
    version       bigint NOT NULL,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    UNIQUE (tenant_id, principal_id)
);

CREATE TABLE profile_directory (
    profile_id    uuid PRIMARY KEY,
    tenant_id     text NOT NULL,
    principal_id  uuid NOT NULL,
    display_name  text NOT NULL,
    email_masked  text NOT NULL,
    phone_masked  text NOT NULL DEFAULT '',
    locale        text NOT NULL,
    timezone      text NOT NULL,
    version       bigint NOT NULL,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    UNIQUE (tenant_id, principal_id)
);

-- A removed preference keeps its row with value NULL and the removing version, so
-- an older PreferenceSet applied again cannot bring it back.
CREATE TABLE preferences (
    profile_id  uuid NOT NULL,
    key         text NOT NULL,
    tenant_id   text NOT NULL,
    value       text,
    version     bigint NOT NULL,
    updated_at  timestamptz NOT NULL,
    PRIMARY KEY (profile_id, key)
);
CREATE INDEX preferences_tenant ON preferences (tenant_id, profile_id);
