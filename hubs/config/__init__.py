"""Config hub: runtime configuration as versioned key/values scoped global →
environment → tenant. Each change is an event, so the value in effect for any
tenant at any past moment can be reconstructed."""
