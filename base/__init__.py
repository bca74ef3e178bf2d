"""The ground floor: settings and logging. Imports nothing of ours; everything else may import it."""
