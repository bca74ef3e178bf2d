"""Identity events other parts may depend on, by their Avro names (the contract
is the .avsc files under schemas/identity/events)."""

PRINCIPAL_REGISTERED = "poseidon.identity.PrincipalRegistered"
LOGIN_SUCCEEDED = "poseidon.identity.LoginSucceeded"
LOGIN_FAILED = "poseidon.identity.LoginFailed"
PRINCIPAL_LOCKED_OUT = "poseidon.identity.PrincipalLockedOut"
REFRESH_TOKEN_ROTATED = "poseidon.identity.RefreshTokenRotated"
REFRESH_TOKEN_REUSE_DETECTED = "poseidon.identity.RefreshTokenReuseDetected"
REFRESH_FAMILY_REVOKED = "poseidon.identity.RefreshFamilyRevoked"
TOTP_ENROLLMENT_STARTED = "poseidon.identity.TotpEnrollmentStarted"
TOTP_ENABLED = "poseidon.identity.TotpEnabled"
TOTP_RESET = "poseidon.identity.TotpReset"
