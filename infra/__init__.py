"""Shared machinery the hubs plug into (processor, projector, gRPC and ops servers,
topics, command client) and the deployment files (local/, compose/, k8s/)."""
