-- Identity read store. Every principal belongs to the 'platform' tenant; secrets
-- are only ever stored sealed (sealed.v1.…) or as SHA-256 hashes.
CREATE TABLE principals (
    principal_id        uuid PRIMARY KEY,
    tenant_id           text NOT NULL,
    login               text NOT NULL UNIQUE,
    kind                text NOT NULL CHECK (kind IN ('user', 'service')),
    sealed_password     text NOT NULL,
    totp_status         text NOT NULL DEFAULT 'none' CHECK (totp_status IN ('none', 'pending', 'active')),
    totp_enrollment_id  uuid,
    totp_sealed_secret  text,
    totp_last_step      bigint NOT NULL DEFAULT -1,
    failed_logins       integer NOT NULL DEFAULT 0,
    locked_until        timestamptz,
    last_login_at       timestamptz,
    version             bigint NOT NULL,
    registered_at       timestamptz NOT NULL,
    updated_at          timestamptz NOT NULL
);

-- One row per refresh-token family (session); version = the principal's aggregate
-- version of the family's last change.
CREATE TABLE refresh_families (
    family_id           uuid PRIMARY KEY,
    tenant_id           text NOT NULL,
    principal_id        uuid NOT NULL,
    family_proof        text NOT NULL,
    generation          bigint NOT NULL,
    current_token_hash  text NOT NULL,
    status              text NOT NULL CHECK (status IN ('active', 'revoked')),
    revoked_reason      text NOT NULL DEFAULT '',
    reuse_detected_at   timestamptz,
    expires_at          timestamptz NOT NULL,
    created_at          timestamptz NOT NULL,
    updated_at          timestamptz NOT NULL,
    version             bigint NOT NULL
);
CREATE INDEX refresh_families_principal ON refresh_families (tenant_id, principal_id, status);
