"""Sagas: pure definitions (`sagas/<process>/definition.py`, the shared
`hubs/saga/definition.py`) and the driver that sends their commands. The registry of
saga types is `sagas.registry.DEFINITIONS`."""
