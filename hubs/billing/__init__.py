"""Billing hub: the tenant's entitlement (plan, message quota, features, period)
as the billing provider states it. Read-only from inside the platform: every
command must come from the billing provider's principal (rule NotBillingProvider)."""
