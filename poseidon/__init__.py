"""Poseidon Hub's small shared runtime: settings, logging and the `poseidon` CLI.
The machinery hubs plug into lives in infra/; the domain lives in hubs/."""
