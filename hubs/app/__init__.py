"""App hub: apps (bots, integrations) that tenants publish, tenants' subscriptions
to them, and the guards (channels, pages, business hours) that the Message Hub
consults before routing a message to an app. Why two aggregates (App and
Subscription) share the hub: see hubs/app/aggregate.py."""
