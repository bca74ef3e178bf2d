"""User events other parts may depend on, by their Avro names (the contract is
the .avsc files under schemas/user/events)."""

PROFILE_CREATED = "poseidon.user.ProfileCreated"
PROFILE_UPDATED = "poseidon.user.ProfileUpdated"
PREFERENCE_SET = "poseidon.user.PreferenceSet"
PREFERENCE_REMOVED = "poseidon.user.PreferenceRemoved"
