"""Billing events other parts may depend on, by their Avro names (the contract is
the .avsc files under schemas/billing/events)."""

ENTITLEMENT_GRANTED = "poseidon.billing.EntitlementGranted"
ENTITLEMENT_CHANGED = "poseidon.billing.EntitlementChanged"
ENTITLEMENT_CANCELLED = "poseidon.billing.EntitlementCancelled"
USAGE_REPORTED = "poseidon.billing.UsageReported"
