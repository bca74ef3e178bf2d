"""Message hub: the records of conversations (one per tenant, channel, channel
account and contact) and their inbound and outbound messages with delivery
status. It records what the router decided; it does not route."""
