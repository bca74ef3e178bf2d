"""Message hub: the records of conversations (one per tenant, channel, channel
account and contact) and their inbound and outbound messages with delivery
status — and the platform's single routing decision point: `routing.py` decides
(pure) from the router's own projection of the tenant, app, billing and wallet
events (`facts.py`, fed by `feed.py`), `router.py` runs it on `ingress.inbound`
and records every decision, with the log positions of its facts, through the
Conversation aggregate (MessageRouted / MessageRejected, which starts the
inbound-message saga in the same transaction)."""
