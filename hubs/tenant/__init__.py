"""Tenant hub: tenants (workspaces) and their memberships — who belongs to which
tenant with which role (owner, admin, agent, viewer), invitations, role changes
and removals, with at least one owner always left. Every role check on the
platform reads the memberships this hub projects. Also the channel registry:
which tenant owns a channel account (a Facebook page), which the Message Hub's
router reads from this hub's events to resolve every inbound item."""
