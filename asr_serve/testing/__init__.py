"""Test helpers that need no model hub or network: a tiny model, synthetic audio."""
