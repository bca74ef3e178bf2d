"""Tenant events other parts may depend on, by their Avro names (the contract is
the .avsc files under schemas/tenant/events)."""

TENANT_CREATED = "poseidon.tenant.TenantCreated"
MEMBER_INVITED = "poseidon.tenant.MemberInvited"
INVITATION_WITHDRAWN = "poseidon.tenant.InvitationWithdrawn"
MEMBER_JOINED = "poseidon.tenant.MemberJoined"
MEMBER_ROLE_CHANGED = "poseidon.tenant.MemberRoleChanged"
MEMBER_REMOVED = "poseidon.tenant.MemberRemoved"
TENANT_ARCHIVED = "poseidon.tenant.TenantArchived"
CHANNEL_CONNECTED = "poseidon.tenant.ChannelConnected"
CHANNEL_RECONNECTED = "poseidon.tenant.ChannelReconnected"
CHANNEL_DISCONNECTED = "poseidon.tenant.ChannelDisconnected"
