-- Tenant read store: tenants, who is a member with which role, pending invitations.
-- infra/security.py's Authorizer reads memberships (tenant_id, principal_id) → role
-- on every gRPC call of every hub: keep its shape.
CREATE TABLE tenants (
    tenant_id   text PRIMARY KEY,
    name        text NOT NULL,
    version     bigint NOT NULL,
    created_by  text NOT NULL,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);

CREATE TABLE memberships (
    tenant_id     text NOT NULL,
    principal_id  text NOT NULL,
    role          text NOT NULL CHECK (role IN ('owner', 'admin', 'agent', 'viewer')),
    joined_at     timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, principal_id)
);
-- "Which tenants am I in?" reads by principal.
CREATE INDEX memberships_principal ON memberships (principal_id);

CREATE TABLE invitations (
    tenant_id     text NOT NULL,
    principal_id  text NOT NULL,
    role          text NOT NULL CHECK (role IN ('owner', 'admin', 'agent', 'viewer')),
    invited_by    text NOT NULL,
    invited_at    timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, principal_id)
);
CREATE INDEX invitations_principal ON invitations (principal_id);
