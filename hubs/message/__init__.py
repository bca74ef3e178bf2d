"""Message hub: the records of conversations (one per tenant, channel, channel
account and contact) and their inbound and outbound messages with delivery
status — and the platform's single routing decision point: `routing.py` decides
(pure), `router.py` runs it on `ingress.inbound` and records every decision
through the Conversation aggregate (MessageRouted / MessageRejected)."""
