"""Poseidon Hub's tests: unit/ needs nothing running; integration/ runs against
the real Kafka and PostgreSQL that the test setup starts."""
