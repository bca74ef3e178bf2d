"""The Note hub: the example ninth hub (tests/unit/test_ninth_hub.py adds it to a copy of the tree)."""
