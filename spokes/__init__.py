"""Spokes: adapters between the platform and outside systems (Facebook, Botpress,
Odoo, S3/MinIO). They react to topics and never route."""
