"""Read models: per-hub PostgreSQL schemas filled from the event topics."""
