"""End-to-end: a chat platform's webhook through ingress, routing, spokes and stand-ins."""
