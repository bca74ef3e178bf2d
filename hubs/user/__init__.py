"""User hub: one profile per (tenant, principal) with contact details and a small
allow-list of preferences. Clear PII (name, email, phone) stays in the events and
the `profiles` table only; logs and the member directory see it masked."""
