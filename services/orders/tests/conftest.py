"""Fixtures for the orders tests (shared ones come from the repository root conftest)."""
