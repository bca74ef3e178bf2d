"""The MinIO spoke: attachments (images, files) fetched from the chat platform's URL and
stored in an S3 bucket per tenant, with metadata. Only the object's key travels in
events, never the bytes. Speaks plain S3, so any S3 server works (MinIO, S3Proxy, AWS)."""

SYSTEM = "s3"
"""The outside system, for breakers and metrics."""
PER_TENANT_BREAKER = False
"""The S3 credentials are the platform's, not a tenant's: one breaker for all tenants."""
