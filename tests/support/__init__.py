"""Shared test helpers: stub factories live here, not copied between test files."""
