"""`make bench`: measures the platform against the raw speed of the same Kafka and
PostgreSQL in the same run and reports ratios against the brief's targets. It
only drives the platform's own entry points; it never changes platform code."""
