"""Chaos tests (`make test-chaos`): processes killed, the stack restarted, outside systems failing."""
