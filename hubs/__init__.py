"""The hubs: one folder per aggregate (commands, events, pure aggregate, declaration,
gRPC queries). Pure modules here import nothing from infra, Kafka, PostgreSQL or gRPC."""
