"""Sagas: pure definitions (`sagas/<process>/definition.py`, the shared
`sagas/definition.py`) and the driver that sends their commands. The registry of
saga types is `sagas.registry.DEFINITIONS`."""
