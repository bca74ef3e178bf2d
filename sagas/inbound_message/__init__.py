"""Inbound message handling: reserve the charge → ask the bot → deliver the reply →
record the customer → store attachments → capture the charge."""
