"""The Identity hub: principals (users and services), their password and TOTP
credentials, refresh-token families and lockout. Secrets never leave the gRPC
service in clear: commands and events carry only sealed or hashed values."""
