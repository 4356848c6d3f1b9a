"""Fixtures for the payments tests (shared ones come from the repository root conftest)."""
