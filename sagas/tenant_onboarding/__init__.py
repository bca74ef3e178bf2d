"""Tenant onboarding: create tenant (with its owner) → open wallet → default config → subscribe default app."""
