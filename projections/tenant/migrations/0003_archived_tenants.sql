-- An archived tenant (TenantArchived) keeps its rows; archived_at says since when.
ALTER TABLE tenants ADD COLUMN archived_at timestamptz;
