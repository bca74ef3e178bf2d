"""Config events other parts may depend on, by their Avro names (the contract is
the .avsc files under schemas/config/events)."""

CONFIG_VALUE_SET = "poseidon.config.ConfigValueSet"
CONFIG_VALUE_UNSET = "poseidon.config.ConfigValueUnset"
