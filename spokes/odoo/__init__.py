"""The Odoo spoke: finds or creates the contact of a conversation as a `res.partner` in the
tenant's Odoo and keeps its phone number, over the external API (XML-RPC `/xmlrpc/2`, or
the JSON-2 API `/json/2` of Odoo 19+). It records customers; it never routes messages."""

SYSTEM = "odoo"
"""The outside system, for breakers and metrics."""
PER_TENANT_BREAKER = True
"""Each tenant has its own Odoo and credentials: one tenant's bad API key must not stop the others."""
