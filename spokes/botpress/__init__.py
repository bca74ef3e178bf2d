"""Botpress spoke: asks a tenant's bot through the Botpress Chat API (the Chat
integration's HTTP API, `{botpress_url}/{webhook_id}`) and hands back its replies.
One Botpress user and conversation per (tenant, channel, contact), created once and
kept in PostgreSQL with the user key sealed. It never routes and never logs message
text or user keys."""
